import { TaskState } from "../../schemas/a2a.ts";
import type { ApprovalStep, ChoiceStep, Step, Workflow, WorkStep } from "../../schemas/workflow.ts";
import type { FinalState, InputAnswer, RunContext, StateDemand } from "./run-machine.ts";

/** Something the driver must do for a run now, keyed so a run never has it under way twice. */
export type Effect =
  | {
      kind: "work";
      key: string;
      step: WorkStep;
      attempt: number;
      visit: number;
      /** For a delegate step whose remote agent asked for input: the task to answer, and the answer. */
      followUp?: { remoteTaskId: string; answer: InputAnswer };
    }
  | { kind: "choice"; key: string; step: ChoiceStep }
  | { kind: "approval-request"; key: string; step: ApprovalStep }
  | { kind: "output"; key: string };

export interface RunSnapshotView {
  status: string;
  value: unknown;
  context: RunContext;
  getMeta(): Record<string, unknown>;
}

/** Pure: what the run's active states ask for, read from their `meta`. */
export function activeDemands(snapshot: RunSnapshotView): StateDemand[] {
  return Object.values(snapshot.getMeta()).filter(
    (meta): meta is StateDemand =>
      typeof meta === "object" && meta !== null && ("effect" in meta || "wait" in meta),
  );
}

/** Pure: the effects a snapshot is waiting on, each with a key that changes on every new attempt. */
export function pendingEffects(workflow: Workflow, snapshot: RunSnapshotView): Effect[] {
  if (snapshot.status === "done") return [];
  const effects: Effect[] = [];
  for (const demand of activeDemands(snapshot)) {
    if ("wait" in demand) continue;
    if (demand.effect === "output") {
      effects.push({ kind: "output", key: "output" });
      continue;
    }
    const step = findStep(workflow, demand.stepId);
    if (demand.effect === "work" && step !== undefined && isWorkStep(step)) {
      const attempt = snapshot.context.attempts[step.id] ?? 1;
      const remote = snapshot.context.remoteInputs?.[step.id];
      // A remote agent waits for an answer nobody has given yet: nothing to do until someone does.
      if (remote !== undefined && remote.answer === undefined) continue;
      effects.push({
        ...(remote?.answer === undefined
          ? {}
          : { followUp: { remoteTaskId: remote.remoteTaskId, answer: remote.answer } }),
        kind: "work",
        key: `${step.id}#${attempt}`,
        step,
        attempt,
        visit: snapshot.context.visits[step.id] ?? 1,
      });
    } else if (demand.effect === "choice" && step !== undefined && "choice" in step) {
      effects.push({ kind: "choice", key: `choice:${step.id}`, step });
    } else if (demand.effect === "approval-request" && step !== undefined && "approval" in step) {
      effects.push({ kind: "approval-request", key: `approval:${step.id}`, step });
    }
  }
  return effects;
}

/** The approvals a snapshot waits for, by step id. */
export function awaitedApprovals(snapshot: RunSnapshotView): string[] {
  return activeDemands(snapshot).flatMap((demand) => ("wait" in demand ? [demand.stepId] : []));
}

/** The delegate steps whose remote agent waits for an answer, by step id. */
export function awaitedRemoteInputs(snapshot: RunSnapshotView): string[] {
  if (snapshot.status === "done") return [];
  const active = new Set(
    activeDemands(snapshot).flatMap((demand) =>
      "effect" in demand && demand.effect === "work" ? [demand.stepId] : [],
    ),
  );
  return Object.entries(snapshot.context.remoteInputs ?? {}).flatMap(([stepId, remote]) =>
    active.has(stepId) && remote.answer === undefined ? [stepId] : [],
  );
}

/**
 * The steps whose tool call waits for an answer to an MCP server's question, by step id: the step
 * is still at work, in the attempt that asked.
 */
export function awaitedElicitations(snapshot: RunSnapshotView): string[] {
  if (snapshot.status === "done") return [];
  const active = new Set(
    activeDemands(snapshot).flatMap((demand) =>
      "effect" in demand && demand.effect === "work" ? [demand.stepId] : [],
    ),
  );
  return Object.entries(snapshot.context.elicitations ?? {}).flatMap(([stepId, pending]) =>
    active.has(stepId) && pending.attempt === snapshot.context.attempts[stepId] ? [stepId] : [],
  );
}

const FINAL_TASK_STATE: Record<FinalState, TaskState> = {
  completed: TaskState.COMPLETED,
  failed: TaskState.FAILED,
  rejected: TaskState.REJECTED,
  canceled: TaskState.CANCELED,
};

/**
 * The A2A state of a run: its final state; input-required while a tool call waits for an answer,
 * or while only approvals are awaited; else working.
 */
export function taskStateOf(workflow: Workflow, snapshot: RunSnapshotView): TaskState {
  if (snapshot.status === "done") return FINAL_TASK_STATE[snapshot.value as FinalState] ?? TaskState.FAILED;
  if (awaitedElicitations(snapshot).length > 0) return TaskState.INPUT_REQUIRED;
  const waiting = awaitedApprovals(snapshot).length + awaitedRemoteInputs(snapshot).length > 0;
  return waiting && pendingEffects(workflow, snapshot).length === 0
    ? TaskState.INPUT_REQUIRED
    : TaskState.WORKING;
}

/** A step anywhere in the workflow: top level, a parallel branch or a compensation step. */
export function findStep(workflow: Workflow, stepId: string): Step | undefined {
  for (const step of workflow.steps) {
    if (step.id === stepId) return step;
    const nested = [
      ...("parallel" in step ? step.parallel : []),
      ...("onError" in step && step.onError ? step.onError.steps : []),
    ];
    const found = nested.find((candidate) => candidate.id === stepId);
    if (found !== undefined) return found;
  }
  return undefined;
}

function isWorkStep(step: Step): step is WorkStep {
  return "call" in step || "read" in step || "prompt" in step || "delegate" in step;
}

/** Delay before attempt `tries` (2 or more) of a step: its backoff, doubled each time, ±20% jitter. */
export function retryDelayMs(step: WorkStep, tries: number, random: () => number = Math.random): number {
  const base = (step.retry?.backoff ?? 200) * 2 ** Math.max(0, tries - 2);
  return Math.round(base * (0.8 + 0.4 * random()));
}
