import { resolve } from "node:path";
import { z } from "zod";
import { DEV_ISSUER } from "../kit/dev-issuer.ts";
import { BaseConfigSchema, loadConfig } from "../kit/index.ts";
import { DEFAULT_EXPRESSION_LIMITS, type ExpressionLimits } from "./expressions.ts";
import { DEFAULT_LIMITS, type RunLimits } from "./limits.ts";

const REPO_ROOT = resolve(import.meta.dirname, "../..");

export const OrchestratorConfigSchema = BaseConfigSchema.extend({
  /** Folder of registered workflow definitions (YAML or JSON). */
  LOOM_WORKFLOWS_DIR: z.string().default(resolve(REPO_ROOT, "workflows")),
  /** How long to wait for a policy decision, in milliseconds. */
  LOOM_POLICY_TIMEOUT_MS: z.coerce.number().int().positive().default(5_000),
  /** A step's timeout when its definition names none, in milliseconds. */
  LOOM_STEP_TIMEOUT_MS: z.coerce.number().int().positive().default(30_000),
  /**
   * The most a step's tool call may run beyond its timeout, in all, while people answer the
   * questions its MCP server asks (elicitation), in milliseconds; the step's clock stops meanwhile.
   */
  LOOM_ELICITATION_TIMEOUT_MS: z.coerce.number().int().positive().default(600_000),
  /** Submissions accepted at once; more wait in the stream. */
  LOOM_MAX_CONCURRENT_SUBMISSIONS: z.coerce.number().int().positive().default(64),
  /** How long a replica's claim on a run lasts unrenewed: a dead replica's runs move on after this. */
  /**
   * Port of the A2A HTTP edge (Agent Card, JSON-RPC, HTTP+JSON); 0 picks a free one. Unset, it is
   * 7410, or a free one when 7410 is taken (a second stack on the host); a port you set must be free.
   */
  LOOM_A2A_PORT: z.coerce.number().int().min(0).max(65_535).optional(),
  /** The base URL clients reach the A2A edge at, as written in the Agent Card. */
  LOOM_A2A_PUBLIC_URL: z.url().optional(),
  /**
   * Comma-separated URL prefixes A2A webhooks may target (for example `https://hooks.example.com/`);
   * none by default. Compared parsed (scheme, host, port, path segments), see a2a/webhook-url.ts.
   */
  LOOM_A2A_WEBHOOK_ALLOW: z
    .string()
    .default("")
    .transform((list) =>
      list
        .split(",")
        .map((prefix) => prefix.trim())
        .filter((prefix) => prefix !== ""),
    ),
  /**
   * Credentials for external A2A agents that `delegate: {url}` steps call: a JSON object from URL
   * prefix to the Authorization value to send, e.g. {"https://agent.example.com/": "Bearer abc"}.
   */
  LOOM_A2A_OUTBOUND_CREDENTIALS: z
    .string()
    .default("{}")
    .transform((text, context) => {
      try {
        return z.record(z.string(), z.string()).parse(JSON.parse(text));
      } catch {
        context.addIssue({
          code: "custom",
          message: "must be a JSON object of URL prefix to Authorization value",
        });
        return z.NEVER;
      }
    }),
  LOOM_RUN_LEASE_MS: z.coerce.number().int().min(500).default(5_000),
  /**
   * How far back, at start and after each reconnect to NATS, an orchestrator looks in the
   * submissions stream for accepted runs the store has lost (a single node without sync that
   * crashed). Longer than the broker keeps writes unflushed (2 min by default).
   */
  LOOM_RECOVERY_WINDOW_MS: z.coerce
    .number()
    .int()
    .positive()
    .default(15 * 60_000),
  /**
   * Origins a browser may call the MCP gateway from (`/mcp`), comma-separated; an origin without a
   * port allows any port. Requests with any other Origin get 403 (DNS rebinding). Requests with no
   * Origin (non-browser clients) pass.
   */
  LOOM_MCP_ALLOWED_ORIGINS: z
    .string()
    .default("http://localhost,http://127.0.0.1,http://[::1]")
    .transform((list) =>
      list
        .split(",")
        .map((origin) => origin.trim())
        .filter((origin) => origin !== ""),
    )
    .pipe(z.array(z.url())),
  /** How long an idle MCP gateway session is kept (KV loom_mcp_sessions TTL), in milliseconds. */
  LOOM_MCP_SESSION_TTL_MS: z.coerce
    .number()
    .int()
    .min(60_000)
    .default(24 * 3_600_000),
  /** The identity provider acp-policy trusts, named in the gateway's protected resource metadata. */
  LOOM_AUTH_ISSUER: z.string().min(1).default(DEV_ISSUER),
  /** Context memory: entries kept per context, bytes kept per context, and how long an idle context is kept. */
  /**
   * A run keeps its step results in its record while they total at most this many JSON bytes;
   * each later one is stored in KV loom_results and referenced from the run.
   */
  LOOM_RESULT_INLINE_MAX_BYTES: z.coerce
    .number()
    .int()
    .min(256)
    .default(16 * 1024),
  /** Limits on what a caller controls; each refusal is a LIMIT_EXCEEDED error naming its setting. */
  /** A run's input, in JSON bytes. */
  LOOM_MAX_INPUT_BYTES: z.coerce.number().int().min(1_024).default(DEFAULT_LIMITS.maxInputBytes),
  /** A workflow definition (registered, inline or graphed), in JSON bytes. */
  LOOM_MAX_DEFINITION_BYTES: z.coerce.number().int().min(1_024).default(DEFAULT_LIMITS.maxDefinitionBytes),
  /** Steps in one workflow, parallel branches and compensation steps included. */
  LOOM_MAX_STEPS: z.coerce.number().int().min(1).default(DEFAULT_LIMITS.maxSteps),
  /** How long one `{% %}` expression may evaluate, in milliseconds. */
  LOOM_EXPRESSION_TIMEOUT_MS: z.coerce.number().int().positive().default(DEFAULT_EXPRESSION_LIMITS.timeoutMs),
  /** How deep an expression's evaluation may nest (recursive functions count each call). */
  LOOM_EXPRESSION_MAX_DEPTH: z.coerce.number().int().positive().default(DEFAULT_EXPRESSION_LIMITS.maxDepth),
  /** The longest sequence (range or result) an expression may build. */
  LOOM_EXPRESSION_MAX_SEQUENCE: z.coerce
    .number()
    .int()
    .positive()
    .default(DEFAULT_EXPRESSION_LIMITS.maxSequence),
  /** The most JSON bytes one expression may return, and a run's output may take. */
  LOOM_EXPRESSION_MAX_RESULT_BYTES: z.coerce
    .number()
    .int()
    .min(1_024)
    .default(DEFAULT_EXPRESSION_LIMITS.maxResultBytes),
  LOOM_MEMORY_MAX_ENTRIES: z.coerce.number().int().positive().default(50),
  LOOM_MEMORY_MAX_BYTES: z.coerce
    .number()
    .int()
    .min(1_024)
    .default(256 * 1024),
  LOOM_MEMORY_TTL_MS: z.coerce
    .number()
    .int()
    .positive()
    .default(7 * 24 * 3_600_000),
});
export type OrchestratorConfig = z.infer<typeof OrchestratorConfigSchema>;

export function readOrchestratorConfig(env: NodeJS.ProcessEnv = process.env): OrchestratorConfig {
  return loadConfig(OrchestratorConfigSchema, env);
}

/** The caller-controlled sizes the config bounds. */
export function runLimitsOf(config: OrchestratorConfig): RunLimits {
  return {
    maxInputBytes: config.LOOM_MAX_INPUT_BYTES,
    maxDefinitionBytes: config.LOOM_MAX_DEFINITION_BYTES,
    maxSteps: config.LOOM_MAX_STEPS,
  };
}

/** The bounds on each expression's evaluation the config sets. */
export function expressionLimitsOf(config: OrchestratorConfig): ExpressionLimits {
  return {
    timeoutMs: config.LOOM_EXPRESSION_TIMEOUT_MS,
    maxDepth: config.LOOM_EXPRESSION_MAX_DEPTH,
    maxSequence: config.LOOM_EXPRESSION_MAX_SEQUENCE,
    maxResultBytes: config.LOOM_EXPRESSION_MAX_RESULT_BYTES,
  };
}
