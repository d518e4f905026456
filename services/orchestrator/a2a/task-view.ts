import { type Task, TaskState } from "../../../schemas/a2a.ts";
import type { RunRecord } from "../../../schemas/run.ts";

/** A run as an A2A Task (JSON wire form): the same id, context, state and output artifact. */
export function taskOfRun(record: RunRecord): Task {
  const { output, error } = record;
  return {
    id: record.runId,
    contextId: record.contextId,
    status: {
      state: record.state,
      timestamp: record.updatedAt,
      ...(error === undefined
        ? {}
        : {
            message: {
              messageId: `${record.runId}-status`,
              role: "ROLE_AGENT",
              taskId: record.runId,
              contextId: record.contextId,
              parts: [{ text: `${error.code}: ${error.message}` }],
            },
          }),
    },
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
    },
  };
}
