import {
  type ElicitRequest,
  type ElicitResult,
  McpError,
  ErrorCode as McpErrorCode,
} from "@modelcontextprotocol/sdk/types.js";
import type { NatsConnection } from "@nats-io/transport-node";
import { RunElicitContract } from "../../schemas/contracts.ts";
import { ErrorCode } from "../../schemas/errors.ts";
import { ElicitAction, RequestedSchemaSchema } from "../../schemas/sampling.ts";
import { Headers, runElicitSubject } from "../../schemas/subjects.ts";
import { describeIssues, type Logger, LoomError, request, toWireError } from "../kit/index.ts";
import type { CallOrigin } from "./server-requests.ts";

export interface ElicitationRelayOptions {
  nc: NatsConnection;
  log: Logger;
  /** Longest Loom waits for someone to answer one question before telling the server `cancel`. */
  elicitationTimeoutMs: number;
}

/**
 * A server's `elicitation/create` (form mode) during a workflow step: the run's orchestrator puts
 * the run into input-required with the message and the requested schema, someone answers with
 * `loom runs input`, and the answer (accept with content, or decline) goes back to the server.
 * The call's own timeout stops while the question is open. Nobody answering in time, the call or
 * the run being canceled, all tell the server `cancel`.
 */
export async function relayElicitation(
  options: ElicitationRelayOptions,
  params: ElicitRequest["params"],
  origin: CallOrigin,
): Promise<ElicitResult> {
  if (params.mode === "url") {
    throw new McpError(McpErrorCode.InvalidParams, "Loom asks its users in form mode only");
  }
  if (origin.runId === undefined || origin.stepId === undefined || origin.taskId === undefined) {
    throw new McpError(
      McpErrorCode.InvalidRequest,
      "Loom asks for input only during a workflow step: this call belongs to no run",
    );
  }
  const schema = RequestedSchemaSchema.safeParse(params.requestedSchema);
  if (!schema.success) {
    throw new McpError(
      McpErrorCode.InvalidParams,
      `requestedSchema is not a flat object of primitive fields: ${describeIssues(schema.error.issues)}`,
    );
  }
  const log = options.log.child({ mcp_server: origin.server, run_id: origin.runId, step_id: origin.stepId });
  const waited = AbortSignal.any([origin.signal, AbortSignal.timeout(options.elicitationTimeoutMs)]);
  origin.clock.pause();
  try {
    const asked = request(
      options.nc,
      runElicitSubject(origin.runId),
      RunElicitContract,
      {
        stepId: origin.stepId,
        taskId: origin.taskId,
        server: origin.server,
        message: params.message,
        requestedSchema: schema.data,
      },
      {
        timeoutMs: options.elicitationTimeoutMs,
        headers: { [Headers.AUTHORIZATION]: origin.authorization },
      },
    );
    const answer = await Promise.race([
      asked,
      new Promise<never>((_resolve, reject) =>
        waited.addEventListener("abort", () => reject(waited.reason), { once: true }),
      ),
    ]);
    log.info({ action: answer.action, by: answer.by }, "elicitation answered");
    return answer.action === ElicitAction.ACCEPT
      ? { action: answer.action, content: answer.content ?? {} }
      : { action: answer.action };
  } catch (error) {
    const wire = toWireError(error);
    if (waited.aborted || wire.code === ErrorCode.TIMEOUT) {
      log.info({ reason: wire.message }, "elicitation not answered; the server is told cancel");
      return { action: ElicitAction.CANCEL };
    }
    log.warn({ err: error }, "elicitation could not be asked");
    throw new McpError(
      McpErrorCode.InternalError,
      `Loom could not ask for input: ${wire.code}: ${wire.message}`,
      error instanceof LoomError ? error.details : undefined,
    );
  } finally {
    origin.clock.resume();
  }
}
