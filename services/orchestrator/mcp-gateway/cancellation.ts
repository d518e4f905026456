import type { RequestId } from "@modelcontextprotocol/sdk/types.js";
import type { NatsConnection } from "@nats-io/transport-node";
import { z } from "zod";
import { mcpSessionCancelSubject } from "../../../schemas/subjects.ts";
import { encodePayload, type Logger, listen } from "../../kit/index.ts";

/** What `notifications/cancelled` says, as gateway replicas tell each other. */
export const GatewayCancelSchema = z.object({
  requestId: z.union([z.string(), z.number()]),
  reason: z.string().optional(),
});

/**
 * A client cancels a request with a notification sent in a request of its own, which may land on
 * another replica (or be served by another per-request server) than the request it cancels. The
 * notification is broadcast to the session's cancel subject; the replica running the request
 * aborts it there, which cancels the worker's task and so the upstream MCP call.
 */
export function announceCancel(
  nc: NatsConnection,
  sessionId: string,
  cancel: z.infer<typeof GatewayCancelSchema>,
): void {
  nc.publish(mcpSessionCancelSubject(sessionId), encodePayload(GatewayCancelSchema, cancel, "cancel"));
}

/**
 * A signal that aborts when the client cancels `requestId` of this session (or when `signal`, the
 * request's own, aborts). `release` stops listening once the request is done.
 */
export function cancellable(
  nc: NatsConnection,
  sessionId: string,
  requestId: RequestId,
  signal: AbortSignal,
  log: Logger,
): { signal: AbortSignal; release(): void } {
  const cancelled = new AbortController();
  const subscription = listen(nc, {
    subject: mcpSessionCancelSubject(sessionId),
    schema: GatewayCancelSchema,
    what: "cancel",
    log,
    handle: (cancel) => {
      if (cancel.requestId === requestId) cancelled.abort(cancel.reason ?? "cancelled by the client");
    },
  });
  return {
    signal: AbortSignal.any([signal, cancelled.signal]),
    release: () => subscription.unsubscribe(),
  };
}
