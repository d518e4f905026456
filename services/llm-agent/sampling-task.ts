import type { Message, Task } from "../../schemas/a2a.ts";
import { TaskState } from "../../schemas/a2a.ts";
import { ErrorCode } from "../../schemas/errors.ts";
import { PolicyAction } from "../../schemas/policy.ts";
import {
  CreateMessageAnswerSchema,
  type SamplingRequest,
  SamplingRequestSchema,
  SamplingTaskMetadataSchema,
} from "../../schemas/sampling.ts";
import type { GrantCheck } from "../kit/grant-check.ts";
import { describeIssues, type Logger, LoomError } from "../kit/index.ts";
import type { LanguageModel } from "./language-model.ts";

export interface SamplingTaskDependencies {
  model: LanguageModel;
  grants: GrantCheck;
  log: Logger;
}

/**
 * Serves one A2A sampling task: its DataPart is `{server, params}` (MCP CreateMessageRequest
 * params); the reply's artifact holds the CreateMessageResult as a DataPart. Nothing is sent to a
 * model without a grant for `llm.sample` on that server with exactly this request.
 */
export async function handleSamplingTask(
  deps: SamplingTaskDependencies,
  message: Message,
  signal: AbortSignal,
): Promise<Task> {
  const request = readRequest(message);
  const metadata = SamplingTaskMetadataSchema.safeParse(message.metadata ?? {}).data;
  await deps.grants.admit(message, metadata?.grant, {
    action: PolicyAction.LLM_SAMPLE,
    target: request.server,
    arguments: request,
    runId: metadata?.runId,
    stepId: metadata?.stepId,
    attempt: 0,
  });
  await deps.grants.consume(message);
  const answer = CreateMessageAnswerSchema.parse(await deps.model.complete(request.params, signal));
  deps.log.info(
    { mcp_server: request.server, model: answer.model, run_id: metadata?.runId, step_id: metadata?.stepId },
    "sampling request answered",
  );
  return {
    id: message.taskId ?? message.messageId,
    // A task must name a context; one sent without gets its own.
    contextId: message.contextId ?? message.messageId,
    status: { state: TaskState.COMPLETED, timestamp: new Date().toISOString() },
    artifacts: [
      {
        artifactId: `${message.messageId}-answer`,
        name: "sampling answer",
        parts: [{ data: answer, mediaType: "application/json" }],
      },
    ],
  };
}

function readRequest(message: Message): SamplingRequest {
  const part = message.parts.find((candidate) => "data" in candidate);
  const parsed = SamplingRequestSchema.safeParse(
    part !== undefined && "data" in part ? part.data : undefined,
  );
  if (!parsed.success) {
    throw new LoomError(
      ErrorCode.INVALID_MESSAGE,
      `the sampling task needs a DataPart {server, params}: ${describeIssues(parsed.error.issues)}`,
    );
  }
  return parsed.data;
}
