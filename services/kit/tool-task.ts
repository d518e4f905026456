import type { NatsConnection } from "@nats-io/transport-node";
import type { Task } from "../../schemas/a2a.ts";
import { PolicyTaskContract } from "../../schemas/contracts.ts";
import { Headers, Subjects } from "../../schemas/subjects.ts";
import type { TaskIntent } from "../../schemas/task-intent.ts";
import { request } from "./bus.ts";
import type { MuxedRequests } from "./muxed-requests.ts";

export interface ToolTaskOptions {
  /** The caller's `Authorization` (a gateway client's token, or the run's token for a step). */
  authorization: string | undefined;
  /** `run` for a run's own step, decided with its run token; `public` for a caller's own token. */
  channel: "public" | "run";
  /** The whole flow's bound: the decision, the tool call and the worker's reply. */
  timeoutMs: number;
  /**
   * Where the worker answers: the asker's inbox for tool tasks (`toolTaskInboxOf`), the only
   * inbox of the orchestrator's that the mcp-worker's NATS user may publish to.
   */
  inbox: MuxedRequests;
}

/**
 * Sends a tool task to the mcp-worker through acp-policy, in one awaited hop: acp-policy decides
 * and, on allow, forwards the task with its grant to the worker, which answers here with the
 * finished Task. A refusal comes back from acp-policy as UNAUTHENTICATED or POLICY_DENIED, a
 * failed call from the worker as its typed error. Workflow steps and the MCP gateway both send here.
 */
export function sendToolTask(
  nc: NatsConnection,
  intent: TaskIntent,
  options: ToolTaskOptions,
): Promise<Task> {
  const subject = options.channel === "run" ? Subjects.POLICY_TASKS_RUN : Subjects.POLICY_TASKS;
  return request(nc, subject, PolicyTaskContract, intent, {
    timeoutMs: options.timeoutMs,
    inbox: options.inbox,
    headers: {
      [Headers.AUTHORIZATION]: options.authorization,
      ...(intent.task.taskId === undefined ? {} : { [Headers.MSG_ID]: intent.task.taskId }),
    },
  });
}
