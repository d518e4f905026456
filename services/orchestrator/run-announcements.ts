import { type Artifact, TaskState, TERMINAL_STATES } from "../../schemas/a2a.ts";
import { ErrorCode } from "../../schemas/errors.ts";
import type { RunEventMetadata, RunRecord } from "../../schemas/run.ts";
import type { Workflow, WorkStep } from "../../schemas/workflow.ts";
import { FinalState, type RunMachineEvent } from "./run-machine.ts";

/**
 * What a run's watchers are told, as pure functions of the transition: the status event a step's
 * start, an applied event or the run's end makes, with the key that dedupes it on the events stream.
 */
export interface Announcement {
  state: TaskState;
  text: string;
  dedupeKey: string;
  metadata?: RunEventMetadata;
}

/** A work step going out (again, on a retry). */
export function stepStarted(step: WorkStep, attempt: number, tries: number): Announcement {
  const what =
    "call" in step
      ? `calling ${step.call}`
      : "read" in step
        ? "reading a resource"
        : "prompt" in step
          ? `rendering ${step.prompt}`
          : `delegating to ${step.delegate.agent ?? step.delegate.url}`;
  return {
    state: TaskState.WORKING,
    text: `step ${step.id}: ${what}${tries > 1 ? ` (attempt ${tries})` : ""}`,
    dedupeKey: `step:${step.id}:${attempt}`,
    metadata: { stepId: step.id, attempt: tries, ...("call" in step ? { call: step.call } : {}) },
  };
}

/** The transitions people wait on: input required, answers given. Others are told by their results. */
export function announcementOf(
  event: RunMachineEvent,
  workflow: Workflow,
  record: RunRecord,
): Announcement | undefined {
  const at = record.updatedAt;
  switch (event.type) {
    case "APPROVAL.REQUESTED": {
      const step = workflow.steps.find((candidate) => candidate.id === event.stepId);
      const roles = step !== undefined && "approval" in step ? step.approval.roles : [];
      return {
        state: TaskState.INPUT_REQUIRED,
        text: event.prompt,
        dedupeKey: `approval:${event.stepId}:${at}`,
        metadata: { stepId: event.stepId, roles, maskedText: event.maskedPrompt },
      };
    }
    case "APPROVAL.ANSWERED":
      // A rejection that ends the run is told by the final event alone, which carries the error:
      // watchers stop at the first terminal state they see.
      if (TERMINAL_STATES.has(record.state)) return undefined;
      return {
        state: record.state,
        text: `step ${event.stepId}: ${event.approved ? "approved" : "rejected"} by ${event.by}`,
        dedupeKey: `answer:${event.stepId}:${at}`,
        metadata: { stepId: event.stepId },
      };
    case "STEP.INPUT_REQUIRED":
      return {
        state: record.state,
        text: `step ${event.stepId}: the remote agent asks: ${event.prompt}`,
        dedupeKey: `remote-input:${event.stepId}:${at}`,
        metadata: { stepId: event.stepId },
      };
    case "STEP.ELICIT": {
      const { server, message, requestedSchema } = event.elicitation;
      return {
        state: TaskState.INPUT_REQUIRED,
        text: `step ${event.stepId}: ${server} asks: ${message}`,
        dedupeKey: `elicit:${event.stepId}:${at}`,
        metadata: { stepId: event.stepId, elicitation: { server, message, requestedSchema } },
      };
    }
    case "STEP.ELICIT_ANSWERED":
      return {
        state: record.state,
        text: `step ${event.stepId}: ${event.answer.action}${event.answer.by === undefined ? "" : ` by ${event.answer.by}`}`,
        dedupeKey: `elicit-answer:${event.stepId}:${at}`,
        metadata: { stepId: event.stepId },
      };
    case "STEP.INPUT_GIVEN":
      return {
        state: record.state,
        text: `step ${event.stepId}: answered by ${event.answer.by}`,
        dedupeKey: `remote-answer:${event.stepId}:${at}`,
        metadata: { stepId: event.stepId },
      };
    default:
      return undefined;
  }
}

/** The run's end: its output artifact (when it completed) and its final status. */
export function runEnded(
  state: FinalState,
  record: RunRecord,
): { artifact?: Artifact; status: Announcement } {
  if (state === FinalState.COMPLETED) {
    const { output } = record;
    return {
      artifact: {
        artifactId: `${record.runId}-output`,
        name: "output",
        parts: [
          output === undefined || output === null
            ? { text: "" }
            : { data: output, mediaType: "application/json" },
        ],
      },
      status: { state: TaskState.COMPLETED, text: "run completed", dedupeKey: "final" },
    };
  }
  const error = record.error ?? { code: ErrorCode.INTERNAL, message: `run ${state}` };
  return { status: { state: record.state, text: error.message, dedupeKey: "final", metadata: { error } } };
}
