import { randomUUID } from "node:crypto";
import type { NatsConnection } from "@nats-io/transport-node";
import { Role, type Task } from "../../../schemas/a2a.ts";
import { ServerRequestRelayContract } from "../../../schemas/contracts.ts";
import {
  type McpOperation,
  type ResourceSubscription,
  subscriptionGrantArguments,
  type TaskNotification,
  TaskNotificationSchema,
  type ToolCallMetadata,
} from "../../../schemas/mcp.ts";
import type {
  ClientRelay,
  ServerRequestAnswer,
  ServerRequestRelay,
} from "../../../schemas/mcp-client-relay.ts";
import type { PolicyAction } from "../../../schemas/policy.ts";
import {
  agentCancelSubject,
  MCP_WORKER_AGENT,
  mcpTaskServerRequestsSubject,
  taskNotificationsSubject,
} from "../../../schemas/subjects.ts";
import {
  encodeJson,
  type Logger,
  listen,
  type MuxedRequests,
  type Service,
  SpanKind,
  sendToolTask,
  serve,
  withSpan,
} from "../../kit/index.ts";

/** Extra time the worker gets over the call's own timeout to answer with a typed error. */
const REPLY_MARGIN_MS = 2_000;

export interface DispatchOptions {
  nc: NatsConnection;
  policyTimeoutMs: number;
  callTimeoutMs: number;
  /** Longest a gateway client's user may take to answer one question a server asks in a call. */
  elicitationTimeoutMs: number;
  log: Logger;
  /** Where the worker answers the gateway's tool tasks: one subscription for them all. */
  toolTasks: MuxedRequests;
}

/** One MCP operation a gateway client asked for, as policy and the worker see it. */
export interface GatewayOperation {
  action: Extract<PolicyAction, "tools.call" | "resources.read" | "prompts.get">;
  /** What policy decides about: `<server>.<tool>`, `<server>.<prompt>` or `<server>.<uri>`. */
  target: string;
  /** What the grant binds (the worker checks the same). */
  arguments: Record<string, unknown>;
  /** The DataPart the worker takes. */
  operation: McpOperation;
  /** The MCP method, for the trace. */
  method: string;
}

/**
 * Runs one gateway operation as a workflow step runs: a policy decision on the caller's token, a
 * signed grant, an A2A task to the mcp-worker (which checks the grant, masks and audits), all in
 * one trace. The caller's token goes to acp-policy only; the worker and the MCP server never see
 * it. Calls are filed under the run `mcp-<session>` so the audit trail shows which session made
 * them. Notifications the server sends while working reach `onNotification`.
 */
export async function dispatchOperation(
  options: DispatchOptions,
  call: {
    sessionId: string;
    authorization: string;
    operation: GatewayOperation;
    onNotification?: (notification: TaskNotification) => Promise<void>;
    /** The server requests the client answers itself, and how (a tool call's only). */
    serverRequests?: ClientAnswers;
    signal?: AbortSignal;
  },
): Promise<Task> {
  const { operation } = call;
  const runId = `mcp-${call.sessionId}`;
  const stepId = `${operation.method.replace(/\W/g, "-")}-${randomUUID()}`;
  const taskId = `${runId}:${stepId}:1`;
  return withSpan(
    `${operation.method} ${operation.target}`,
    {
      kind: SpanKind.SERVER,
      attributes: {
        "mcp.method.name": operation.method,
        "mcp.session.id": call.sessionId,
        "loom.run.id": runId,
        "loom.step.id": stepId,
      },
    },
    async () => {
      const metadata: ToolCallMetadata = {
        runId,
        stepId,
        attempt: 1,
        timeoutMs: options.callTimeoutMs,
        ...(call.serverRequests === undefined ? {} : { clientRelay: call.serverRequests.relay }),
      };
      const relay = relayNotifications(options, taskId, call.onNotification);
      const answering = answerServerRequests(options, taskId, { runId, stepId }, call.serverRequests);
      const cancel = () => options.nc.publish(agentCancelSubject(MCP_WORKER_AGENT), encodeJson({ taskId }));
      call.signal?.addEventListener("abort", cancel, { once: true });
      try {
        return await sendToolTask(
          options.nc,
          {
            decision: {
              action: operation.action,
              resource: { tool: operation.target },
              arguments: operation.arguments,
              runId,
              stepId,
              attempt: 1,
            },
            task: {
              messageId: randomUUID(),
              role: Role.USER,
              taskId,
              contextId: runId,
              parts: [{ data: operation.operation }],
              metadata,
            },
          },
          {
            // The caller's token goes to acp-policy only: the grant is the worker's only credential.
            authorization: call.authorization,
            channel: "public",
            // The worker's clock stops while the client's user answers a question: so does this one.
            timeoutMs:
              options.policyTimeoutMs +
              options.callTimeoutMs +
              REPLY_MARGIN_MS +
              (call.serverRequests?.relay.elicitation === true ? options.elicitationTimeoutMs : 0),
            inbox: options.toolTasks,
          },
        );
      } finally {
        call.signal?.removeEventListener("abort", cancel);
        relay?.unsubscribe();
        // Not awaited: a question the call no longer waits for must not hold its result.
        void answering?.stop();
      }
    },
  );
}

/** Forwards what the worker publishes about this task while it runs; undefined when no one listens. */
function relayNotifications(
  options: DispatchOptions,
  taskId: string,
  onNotification: ((notification: TaskNotification) => Promise<void>) | undefined,
): { unsubscribe(): void } | undefined {
  if (onNotification === undefined) return undefined;
  return listen(options.nc, {
    subject: taskNotificationsSubject(taskId),
    schema: TaskNotificationSchema,
    what: "task notification",
    log: options.log,
    handle: (notification) =>
      onNotification(notification).catch((cause: unknown) =>
        options.log.debug({ err: cause, task_id: taskId }, "notification not relayed: client gone"),
      ),
  });
}

/** What a gateway client answers itself during a tool call (see server-request-relay.ts). */
export interface ClientAnswers {
  relay: ClientRelay;
  answer(request: ServerRequestRelay, call: { runId: string; stepId: string }): Promise<ServerRequestAnswer>;
}

/** Serves the worker's server requests for this task while it runs; undefined when the client answers none. */
function answerServerRequests(
  options: DispatchOptions,
  taskId: string,
  call: { runId: string; stepId: string },
  answers: ClientAnswers | undefined,
): Service | undefined {
  if (answers === undefined || (!answers.relay.sampling && !answers.relay.elicitation)) return undefined;
  return serve(options.nc, {
    subject: mcpTaskServerRequestsSubject(taskId),
    contract: ServerRequestRelayContract,
    log: options.log,
    handle: (request) => answers.answer(request, call),
  });
}

/** A subscription change as policy and the worker see it: granted like a read of the resource. */
export function subscription(
  server: string,
  uri: string,
  change: ResourceSubscription["subscription"],
): GatewayOperation {
  const operation: ResourceSubscription = { server, resource: uri, subscription: change };
  return {
    action: "resources.read",
    target: `${server}.${uri}`,
    arguments: subscriptionGrantArguments(operation),
    operation,
    method: `resources/${change}`,
  };
}
