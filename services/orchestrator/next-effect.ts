import { TaskState } from "../../schemas/a2a.ts";
import type { CallStep, Workflow } from "../../schemas/workflow.ts";
import { FINAL_TASK_STATE, FinalState, OUTPUT_STATE, type RunContext, stepIdOfState } from "./run-machine.ts";

/** The one thing a run needs done next, read off its snapshot. */
export type Effect =
  | { kind: "call"; step: CallStep; attempt: number }
  | { kind: "output" }
  | { kind: "finished"; state: FinalState };

export interface RunSnapshotView {
  value: unknown;
  context: RunContext;
}

/** Pure: which effect the run's current state stands for. */
export function nextEffect(workflow: Workflow, snapshot: RunSnapshotView): Effect {
  const { value } = snapshot;
  if (value === OUTPUT_STATE) return { kind: "output" };
  const stepId = stepIdOfState(value);
  if (stepId !== undefined) {
    const step = workflow.steps.find((candidate) => candidate.id === stepId);
    if (step === undefined)
      throw new Error(`snapshot names step "${stepId}", which ${workflow.id} does not have`);
    return { kind: "call", step, attempt: snapshot.context.attempts[stepId] ?? 1 };
  }
  if (isFinalState(value)) return { kind: "finished", state: value };
  throw new Error(`snapshot of ${workflow.id} is in unknown state ${JSON.stringify(value)}`);
}

function isFinalState(value: unknown): value is FinalState {
  return Object.values(FinalState).includes(value as FinalState);
}

/** The A2A state a run is in, for its record and its events. */
export function taskStateOf(effect: Effect): TaskState {
  return effect.kind === "finished" ? FINAL_TASK_STATE[effect.state] : TaskState.WORKING;
}

/** Delay before attempt `attempt` (2 or more): the step's backoff, doubled each time, with ±20% jitter. */
export function retryDelayMs(step: CallStep, attempt: number, random: () => number = Math.random): number {
  const base = (step.retry?.backoff ?? 200) * 2 ** Math.max(0, attempt - 2);
  return Math.round(base * (0.8 + 0.4 * random()));
}
