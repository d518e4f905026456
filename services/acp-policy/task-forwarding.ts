import {
  headers as createHeaders,
  createInbox,
  type NatsConnection,
  type Subscription,
} from "@nats-io/transport-node";
import { ErrorCode } from "../../schemas/errors.ts";
import { isToolTaskInbox } from "../../schemas/nats-users.ts";
import { PolicyEffect } from "../../schemas/policy.ts";
import { agentTasksSubject, Headers, MCP_WORKER_AGENT } from "../../schemas/subjects.ts";
import type { TaskIntent } from "../../schemas/task-intent.ts";
import {
  encodeJson,
  LoomError,
  NO_REPLY,
  type RequestContext,
  refusalOf,
  SpanKind,
  tracedHeaders,
  withSpan,
} from "../kit/index.ts";
import { type DecideDependencies, decide } from "./decide.ts";
import { observeDecision } from "./decision-telemetry.ts";
import type { DecisionChannel } from "./token-verifier.ts";

/** NATS's status for a message nobody was subscribed to. */
const NO_RESPONDERS = 503;

/**
 * Decides tool tasks' intents and, on allow, forwards each task with its grant to the mcp-worker,
 * which answers the asker directly (the inbox in `Loom-Reply-To`): a step costs one awaited hop
 * on its critical path. A refusal is answered here. The asker's token stays here: the grant is
 * the worker's only credential. The forwarded task's own reply subject is an inbox of this
 * process naming the asker's, where nats-server says "no responders" when no worker serves, which
 * is answered to the asker as AGENT_UNAVAILABLE at once, not after the step's timeout.
 */
export class TaskForwarder {
  readonly #deps: DecideDependencies & { nc: NatsConnection };
  readonly #inbox: string;
  readonly #subscription: Subscription;

  constructor(deps: DecideDependencies & { nc: NatsConnection }, inboxPrefix: string | undefined) {
    this.#deps = deps;
    this.#inbox = createInbox(inboxPrefix);
    this.#subscription = deps.nc.subscribe(`${this.#inbox}.*`, {
      callback: (error, msg) => {
        if (error !== null) {
          deps.log.error({ err: error }, "forwarded tasks' inbox failed");
          return;
        }
        const asker = Buffer.from(msg.subject.slice(this.#inbox.length + 1), "base64url").toString();
        if (msg.headers?.code === NO_RESPONDERS) {
          const wire = {
            code: ErrorCode.AGENT_UNAVAILABLE,
            message: `nothing is serving ${agentTasksSubject(MCP_WORKER_AGENT)}; is the mcp-worker running?`,
          };
          const failed = createHeaders();
          failed.set(Headers.ERROR, wire.code);
          deps.nc.publish(asker, encodeJson(wire), { headers: failed });
          return;
        }
        // A worker that answered here rather than to the asker: passed on as it is.
        deps.nc.publish(asker, msg.data, msg.headers === undefined ? undefined : { headers: msg.headers });
      },
    });
  }

  async forward(
    intent: TaskIntent,
    context: RequestContext,
    channel: DecisionChannel,
  ): Promise<typeof NO_REPLY> {
    // Answered where the worker may publish, or never: refused before anything is decided.
    if (context.reply !== undefined && !isToolTaskInbox(context.reply)) {
      throw new LoomError(
        ErrorCode.INVALID_INPUT,
        `a tool task is answered on the asker's tool-task inbox (_INBOX.<user>.tasks.…), not ${context.reply}: send it with sendToolTask`,
      );
    }
    const deps = this.#deps;
    const asked = intent.decision;
    const decision = await observeDecision(asked, () => decide(deps, asked, context.authorization, channel));
    if (decision.effect !== PolicyEffect.ALLOW)
      throw refusalOf(decision, asked.resource.tool ?? asked.action);
    if (decision.grant === undefined) {
      throw new LoomError(ErrorCode.INVALID_INPUT, `${asked.action} is no task for the mcp-worker`);
    }
    if (context.reply === undefined) return NO_REPLY;
    // Parsed on the way in (serve); only the grant is added, which the worker checks against the task.
    const task = { ...intent.task, metadata: { ...intent.task.metadata, grant: decision.grant } };
    const subject = agentTasksSubject(MCP_WORKER_AGENT);
    const asker = context.reply;
    // A request whose answer goes to the asker: the worker's `process` span hangs under this one.
    await withSpan(
      `send ${subject}`,
      {
        kind: SpanKind.CLIENT,
        attributes: {
          "messaging.system": "nats",
          "messaging.destination.name": subject,
          "messaging.operation.type": "send",
        },
      },
      async () =>
        deps.nc.publish(subject, encodeJson(task), {
          reply: `${this.#inbox}.${Buffer.from(asker).toString("base64url")}`,
          headers: tracedHeaders({ [Headers.MSG_ID]: intent.task.taskId, [Headers.REPLY_TO]: asker }),
        }),
    );
    return NO_REPLY;
  }

  close(): void {
    this.#subscription.unsubscribe();
  }
}
