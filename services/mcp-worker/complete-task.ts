import { randomUUID } from "node:crypto";
import type { Message, Task } from "../../schemas/a2a.ts";
import type { ExecutedCall } from "../../schemas/audit.ts";
import { type CompletionComplete, completionGrantArguments } from "../../schemas/mcp.ts";
import { SpanKind, withSpan } from "../kit/index.ts";
import { runOperation } from "./read-prompt-tasks.ts";
import type { TaskHandlerDependencies } from "./task-handler.ts";

/**
 * Serves an A2A task asking for completions of one argument (`completion/complete`). It is granted
 * like what it completes: a prompt's arguments as `prompts.get` of `<server>.<prompt>`, a resource
 * template's as `resources.read` of `<server>.<template>`, with the argument (and its context) as
 * the arguments the grant binds. The artifact holds the completion as the server gave it.
 */
export async function handleCompleteTask(
  deps: TaskHandlerDependencies,
  message: Message,
  operation: CompletionComplete,
  executed: ExecutedCall,
  signal: AbortSignal,
): Promise<Task> {
  const { ref, argument, context } = operation.complete;
  const action = ref.type === "ref/prompt" ? "prompts.get" : "resources.read";
  const target = `${operation.server}.${ref.type === "ref/prompt" ? ref.name : ref.uri}`;
  return runOperation(
    deps,
    message,
    { action, target, arguments: completionGrantArguments(operation) },
    operation.server,
    executed,
    async (connection, timeoutMs) => {
      const result = await withSpan(
        `completion/complete ${target}`,
        { kind: SpanKind.CLIENT, attributes: { "mcp.method.name": "completion/complete" } },
        () =>
          connection.withClient(target, timeoutMs, (client) =>
            client.complete(
              { ref, argument, ...(context === undefined ? {} : { context }) },
              { timeout: timeoutMs, signal },
            ),
          ),
      );
      return {
        artifactId: randomUUID(),
        name: target,
        parts: [{ data: { completion: result.completion }, mediaType: "application/json" }],
      };
    },
  );
}
