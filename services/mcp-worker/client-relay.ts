import {
  type CreateMessageRequest,
  type CreateMessageResult,
  type ElicitRequest,
  type ElicitResult,
  McpError,
  ErrorCode as McpErrorCode,
} from "@modelcontextprotocol/sdk/types.js";
import type { NatsConnection } from "@nats-io/transport-node";
import { AuditKind } from "../../schemas/audit.ts";
import { ServerRequestRelayContract } from "../../schemas/contracts.ts";
import { ErrorCode } from "../../schemas/errors.ts";
import { RelayedMethod, type ServerRequestAnswer } from "../../schemas/mcp-client-relay.ts";
import { ElicitAction } from "../../schemas/sampling.ts";
import { mcpTaskServerRequestsSubject } from "../../schemas/subjects.ts";
import type { AuditLog } from "../kit/audit-chain.ts";
import { digestOf } from "../kit/digest.ts";
import { type Logger, LoomError, request, toWireError } from "../kit/index.ts";
import type { CallOrigin } from "./server-requests.ts";

export interface ClientRelayOptions {
  nc: NatsConnection;
  log: Logger;
  audit: AuditLog;
  /** Longest the gateway's client may take to answer a sampling request (the call's clock runs). */
  samplingTimeoutMs: number;
  /** Longest its user may take to answer one question (the call's clock stops meanwhile). */
  elicitationTimeoutMs: number;
}

/**
 * A server's `sampling/createMessage` during a gateway tool call whose client declared sampling
 * (refused otherwise):
 * the gateway replica running the call decides `llm.sample` for its caller (the worker never holds
 * the caller's token) and asks the client's own model. A denial names the rule.
 */
export async function relaySamplingToClient(
  options: ClientRelayOptions,
  params: CreateMessageRequest["params"],
  origin: CallOrigin,
): Promise<CreateMessageResult> {
  declared(origin, "sampling", RelayedMethod.SAMPLING);
  const answer = await ask(options, RelayedMethod.SAMPLING, params, origin, options.samplingTimeoutMs);
  return answer as CreateMessageResult;
}

/**
 * A server's `elicitation/create` during a gateway tool call whose client declared elicitation
 * (refused otherwise):
 * the question goes to the client's user on the call's response stream. The call's own timeout
 * stops while it is open; nobody answering in time, or the call ending, tells the server `cancel`.
 * The exchange is audited as digests (the question and the answer may be personal).
 */
export async function relayElicitationToClient(
  options: ClientRelayOptions,
  params: ElicitRequest["params"],
  origin: CallOrigin,
): Promise<ElicitResult> {
  declared(origin, "elicitation", RelayedMethod.ELICITATION);
  const started = performance.now();
  let outcome: string = ElicitAction.CANCEL;
  let answer: ElicitResult = { action: ElicitAction.CANCEL };
  origin.clock.pause();
  try {
    const waited = AbortSignal.any([origin.signal, AbortSignal.timeout(options.elicitationTimeoutMs)]);
    try {
      answer = (await Promise.race([
        ask(options, RelayedMethod.ELICITATION, params, origin, options.elicitationTimeoutMs),
        new Promise<never>((_resolve, reject) =>
          waited.addEventListener("abort", () => reject(waited.reason), { once: true }),
        ),
      ])) as ElicitResult;
      outcome = answer.action;
      return answer;
    } catch (error) {
      if (waited.aborted || (error instanceof McpError && error.code === McpErrorCode.RequestTimeout)) {
        options.log.info(
          { mcp_server: origin.server },
          "elicitation not answered; the server is told cancel",
        );
        return answer;
      }
      outcome = error instanceof McpError ? `MCP_${error.code}` : ErrorCode.INTERNAL;
      throw error;
    }
  } finally {
    origin.clock.resume();
    await options.audit.append({
      kind: AuditKind.ELICITATION_ANSWER,
      principal: origin.principal ?? "unknown",
      resource: origin.server,
      outcome,
      latencyMs: Math.round(performance.now() - started),
      argsDigest: digestOf(params),
      resultDigest: digestOf(answer),
      ...(origin.runId === undefined ? {} : { runId: origin.runId }),
      ...(origin.stepId === undefined ? {} : { stepId: origin.stepId }),
    });
  }
}

/** A gateway client that did not declare the capability cannot be asked, and nobody else may answer for it. */
function declared(origin: CallOrigin, capability: "sampling" | "elicitation", method: RelayedMethod): void {
  if (origin.clientRelay?.[capability] === true) return;
  throw new McpError(
    McpErrorCode.InvalidRequest,
    `Loom cannot answer ${method} from "${origin.server}": the MCP gateway's client did not declare the ${capability} capability`,
  );
}

/** Sends the request to the gateway replica running the call; its failures become MCP errors. */
async function ask(
  options: ClientRelayOptions,
  method: RelayedMethod,
  params: Record<string, unknown>,
  origin: CallOrigin,
  timeoutMs: number,
): Promise<ServerRequestAnswer> {
  if (origin.taskId === undefined) {
    throw new McpError(McpErrorCode.InvalidRequest, `Loom cannot relay ${method}: the call has no task`);
  }
  const log = options.log.child({ mcp_server: origin.server, run_id: origin.runId, step_id: origin.stepId });
  try {
    const answer = await request(
      options.nc,
      mcpTaskServerRequestsSubject(origin.taskId),
      ServerRequestRelayContract,
      { method, server: origin.server, params },
      { timeoutMs },
    );
    log.info({ method }, "server request answered by the gateway's client");
    return answer;
  } catch (error) {
    const wire = toWireError(error);
    log.warn(
      { method, code: wire.code, rule: wire.details?.rule },
      "server request not answered by the client",
    );
    const code =
      wire.code === ErrorCode.TIMEOUT
        ? McpErrorCode.RequestTimeout
        : wire.code === ErrorCode.POLICY_DENIED || wire.code === ErrorCode.UNAUTHENTICATED
          ? McpErrorCode.InvalidRequest
          : typeof wire.details?.mcpCode === "number"
            ? wire.details.mcpCode
            : McpErrorCode.InternalError;
    throw new McpError(code, wire.message, error instanceof LoomError ? error.details : wire.details);
  }
}
