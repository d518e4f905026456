import type { Message, Task } from "../../schemas/a2a.ts";
import type { ExecutedCall } from "../../schemas/audit.ts";
import { ErrorCode } from "../../schemas/errors.ts";
import {
  CompletionCompleteSchema,
  PromptGetSchema,
  ResourceReadSchema,
  ResourceSubscriptionSchema,
} from "../../schemas/mcp.ts";
import { describeIssues, LoomError } from "../kit/index.ts";
import { handleCompleteTask } from "./complete-task.ts";
import type { InFlightTasks } from "./in-flight.ts";
import { handlePromptTask, handleReadTask } from "./read-prompt-tasks.ts";
import { handleSubscriptionTask, type ResourceSubscribers } from "./resource-subscriptions.ts";
import { handleToolTask, type TaskHandlerDependencies } from "./task-handler.ts";

/**
 * Routes an A2A task by what its DataPart asks for: a tool call, a resource read or subscription,
 * a prompt or a completion. `executed` is filled in with the MCP call that went out, for the
 * task's execution record.
 */
export async function handleAgentTask(
  deps: TaskHandlerDependencies,
  inFlight: InFlightTasks,
  subscribers: ResourceSubscribers,
  message: Message,
  executed: ExecutedCall,
): Promise<Task> {
  const data = message.parts.find((part) => "data" in part);
  const body =
    data !== undefined && "data" in data && typeof data.data === "object" && data.data !== null
      ? data.data
      : {};
  return inFlight.run(message.taskId, (signal) => {
    if ("subscription" in body) {
      const operation = parseOperation(ResourceSubscriptionSchema, body);
      return handleSubscriptionTask(deps, subscribers, message, operation, executed);
    }
    if ("resource" in body)
      return handleReadTask(deps, message, parseOperation(ResourceReadSchema, body), executed, signal);
    if ("complete" in body)
      return handleCompleteTask(
        deps,
        message,
        parseOperation(CompletionCompleteSchema, body),
        executed,
        signal,
      );
    if ("prompt" in body)
      return handlePromptTask(deps, message, parseOperation(PromptGetSchema, body), executed, signal);
    return handleToolTask(deps, message, executed, signal);
  });
}

function parseOperation<T>(
  schema: {
    safeParse(
      value: unknown,
    ):
      | { success: true; data: T }
      | { success: false; error: { issues: Array<{ path: PropertyKey[]; message: string }> } };
  },
  body: unknown,
): T {
  const parsed = schema.safeParse(body);
  if (!parsed.success) {
    throw new LoomError(
      ErrorCode.INVALID_MESSAGE,
      `the task's operation is malformed: ${describeIssues(parsed.error.issues)}`,
    );
  }
  return parsed.data;
}
