import { z } from "zod";

/** Stable error codes. A code is part of the wire contract: add, never rename. */
export const ErrorCode = {
  INVALID_INPUT: "INVALID_INPUT",
  INVALID_MESSAGE: "INVALID_MESSAGE",
  UNKNOWN_WORKFLOW: "UNKNOWN_WORKFLOW",
  INVALID_WORKFLOW: "INVALID_WORKFLOW",
  EXPRESSION_FAILED: "EXPRESSION_FAILED",
  UNAUTHENTICATED: "UNAUTHENTICATED",
  POLICY_DENIED: "POLICY_DENIED",
  /** A webhook URL outside LOOM_A2A_WEBHOOK_ALLOW (compared parsed and normalised), or one resolving inside. */
  WEBHOOK_REFUSED: "WEBHOOK_REFUSED",
  /**
   * A `delegate: {url}` step's URL, its Agent Card's or an interface its card names is outside
   * LOOM_A2A_DELEGATE_ALLOW (compared as WEBHOOK_REFUSED's), resolves inside, or answered a redirect.
   */
  DELEGATE_REFUSED: "DELEGATE_REFUSED",
  /** A tool task without a valid grant for exactly this call (missing, expired, other args or tool). */
  GRANT_REFUSED: "GRANT_REFUSED",
  /** `loom audit verify` found a record whose hash or link to the previous one is wrong. */
  AUDIT_CHAIN_BROKEN: "AUDIT_CHAIN_BROKEN",
  UNKNOWN_SERVER: "UNKNOWN_SERVER",
  UNKNOWN_TOOL: "UNKNOWN_TOOL",
  SERVER_UNAVAILABLE: "SERVER_UNAVAILABLE",
  /** The server's concurrency limit is reached and its queue is full: try again shortly. */
  SERVER_BUSY: "SERVER_BUSY",
  TOOL_ERROR: "TOOL_ERROR",
  TOOL_TIMEOUT: "TOOL_TIMEOUT",
  /** A tool with an outputSchema answered without structuredContent, or with content that breaks it. */
  TOOL_OUTPUT_INVALID: "TOOL_OUTPUT_INVALID",
  /** The worker could not authenticate to a remote MCP server (token endpoint or server refused it). */
  SERVER_AUTH_FAILED: "SERVER_AUTH_FAILED",
  AGENT_UNAVAILABLE: "AGENT_UNAVAILABLE",
  /** NATS refused the connection's user or password (or wants a user and none was given). */
  NATS_AUTH_FAILED: "NATS_AUTH_FAILED",
  TIMEOUT: "TIMEOUT",
  CONFIG_INVALID: "CONFIG_INVALID",
  RUN_NOT_FOUND: "RUN_NOT_FOUND",
  /**
   * No memory of that context the caller may touch: it has none, or policy refuses it (the same
   * answer for both, so nobody learns that another principal's context exists).
   */
  CONTEXT_NOT_FOUND: "CONTEXT_NOT_FOUND",
  /** The run was canceled on request. */
  CANCELED: "CANCELED",
  /** The run passed its workflow's deadline. */
  DEADLINE_EXCEEDED: "DEADLINE_EXCEEDED",
  APPROVAL_REJECTED: "APPROVAL_REJECTED",
  /** That workflow version is registered already with other content: give the new one a new version. */
  WORKFLOW_VERSION_EXISTS: "WORKFLOW_VERSION_EXISTS",
  /** A message is larger than the broker takes (NATS max_payload). */
  PAYLOAD_TOO_LARGE: "PAYLOAD_TOO_LARGE",
  /**
   * Something a caller controls is over a configured limit (input or definition size, steps,
   * expression time, depth or sequence length); `details` names the limit, the value and the most allowed.
   */
  LIMIT_EXCEEDED: "LIMIT_EXCEEDED",
  /** The run is not in a state that takes this input (already ended, or not waiting for it). */
  RUN_NOT_WAITING: "RUN_NOT_WAITING",
  /** Only a failed or canceled run can be rerun: this one is still going, or completed. */
  RUN_NOT_RERUNNABLE: "RUN_NOT_RERUNNABLE",
  /** NATS did not answer (it restarted, or the connection is down): worth another try. */
  BROKER_UNAVAILABLE: "BROKER_UNAVAILABLE",
  /**
   * The run has no step of that id (for feedback: none that called a tool, or its call record has
   * expired; for a rerun: none in its workflow).
   */
  STEP_NOT_FOUND: "STEP_NOT_FOUND",
  /** The MCP gateway's client refused or failed a server's request relayed to it (sampling, elicitation). */
  MCP_CLIENT_ERROR: "MCP_CLIENT_ERROR",
  /** Something only development mode offers (the dev authorization server), asked of a production setup. */
  DEV_MODE_ONLY: "DEV_MODE_ONLY",
  /**
   * An HTTP request whose `Host` names no host the service answers to (DNS rebinding): the name
   * must be loopback, an address, the public URL's host or one of LOOM_HTTP_ALLOWED_HOSTS.
   */
  HOST_NOT_ALLOWED: "HOST_NOT_ALLOWED",
  /** An HTTP request from a browser page whose `Origin` is neither this host nor in LOOM_HTTP_ALLOWED_ORIGINS. */
  ORIGIN_NOT_ALLOWED: "ORIGIN_NOT_ALLOWED",
  INTERNAL: "INTERNAL",
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

/** Codes worth another attempt: the same request may succeed once the peer is back. */
export const RETRYABLE_CODES: ReadonlySet<ErrorCode> = new Set([
  ErrorCode.BROKER_UNAVAILABLE,
  ErrorCode.AGENT_UNAVAILABLE,
  ErrorCode.TIMEOUT,
  ErrorCode.SERVER_UNAVAILABLE,
  ErrorCode.TOOL_TIMEOUT,
  ErrorCode.SERVER_BUSY,
]);

/** An error as it travels on the bus and in run events. */
export const WireErrorSchema = z.object({
  code: z.enum(ErrorCode),
  message: z.string(),
  /** Machine-readable context, for example the policy rule that denied a call. */
  details: z.record(z.string(), z.unknown()).optional(),
});
export type WireError = z.infer<typeof WireErrorSchema>;
