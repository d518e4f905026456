import type { NatsConnection } from "@nats-io/transport-node";
import { ErrorCode } from "../../schemas/errors.ts";
import { PolicyEffect } from "../../schemas/policy.ts";
import { agentTasksSubject, Headers, MCP_WORKER_AGENT } from "../../schemas/subjects.ts";
import type { TaskIntent } from "../../schemas/task-intent.ts";
import {
  encodeJson,
  LoomError,
  NO_REPLY,
  type RequestContext,
  refusalOf,
  tracedHeaders,
} from "../kit/index.ts";
import { type DecideDependencies, decide } from "./decide.ts";
import { observeDecision } from "./decision-telemetry.ts";
import type { DecisionChannel } from "./token-verifier.ts";

/**
 * Decides a tool task's intent and, on allow, forwards the task with its grant to the mcp-worker,
 * with the asker's reply subject: the worker answers the asker directly, so a step costs one
 * awaited hop on its critical path. A refusal (or an intent that is no tool task) is answered here.
 * The asker's token stays here: the grant is the worker's only credential.
 */
export async function forwardTask(
  deps: DecideDependencies & { nc: NatsConnection },
  intent: TaskIntent,
  context: RequestContext,
  channel: DecisionChannel,
): Promise<typeof NO_REPLY> {
  const asked = intent.decision;
  const decision = await observeDecision(asked, () => decide(deps, asked, context.authorization, channel));
  if (decision.effect !== PolicyEffect.ALLOW) throw refusalOf(decision, asked.resource.tool ?? asked.action);
  if (decision.grant === undefined) {
    throw new LoomError(ErrorCode.INVALID_INPUT, `${asked.action} is no task for the mcp-worker`);
  }
  // Parsed on the way in (serve); only the grant is added, which the worker checks against the task.
  const task = { ...intent.task, metadata: { ...intent.task.metadata, grant: decision.grant } };
  deps.nc.publish(agentTasksSubject(MCP_WORKER_AGENT), encodeJson(task), {
    ...(context.reply === undefined ? {} : { reply: context.reply }),
    headers: tracedHeaders({ [Headers.MSG_ID]: intent.task.taskId }),
  });
  return NO_REPLY;
}
