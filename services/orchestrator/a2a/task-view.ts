import { type Task, TaskState } from "../../../schemas/a2a.ts";
import type { RunRecord } from "../../../schemas/run.ts";

/**
 * A run as an A2A Task (JSON wire form): the same id, context, state and output artifact, and its
 * history: the message that started it (its input) and, when it failed, the agent's answer.
 */
export function taskOfRun(record: RunRecord): Task {
  const { output, error } = record;
  const conversation = { taskId: record.runId, contextId: record.contextId };
  const statusMessage =
    error === undefined
      ? undefined
      : {
          messageId: `${record.runId}-status`,
          role: "ROLE_AGENT" as const,
          ...conversation,
          parts: [{ text: `${error.code}: ${error.message}` }],
        };
  const inputMessage = {
    messageId: `${record.runId}-input`,
    role: "ROLE_USER" as const,
    ...conversation,
    parts: [{ data: record.input, mediaType: "application/json" }],
  };
  return {
    id: record.runId,
    contextId: record.contextId,
    status: {
      state: record.state,
      timestamp: record.updatedAt,
      ...(statusMessage === undefined ? {} : { message: statusMessage }),
    },
    history: statusMessage === undefined ? [inputMessage] : [inputMessage, statusMessage],
    artifacts:
      record.state === TaskState.COMPLETED && output !== undefined && output !== null
        ? [
            {
              artifactId: `${record.runId}-output`,
              name: "output",
              parts: [{ data: output, mediaType: "application/json" }],
            },
          ]
        : [],
    metadata: {
      workflowId: record.workflowId,
      ...(record.workflowVersion === undefined ? {} : { workflowVersion: record.workflowVersion }),
      ...(record.rerunOf === undefined ? {} : { rerunOf: record.rerunOf }),
      ...(record.rerunAs === undefined ? {} : { rerunAs: record.rerunAs }),
    },
  };
}
