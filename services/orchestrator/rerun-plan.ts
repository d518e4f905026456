import { shortStateName, TaskState } from "../../schemas/a2a.ts";
import { ErrorCode } from "../../schemas/errors.ts";
import type { RerunOf, RunRecord, StepTimes } from "../../schemas/run.ts";
import { StepStatus } from "../../schemas/run-read.ts";
import type { Step, Workflow } from "../../schemas/workflow.ts";
import { didYouMean, LoomError } from "../kit/index.ts";
import { pendingEffects } from "./demands.ts";
import { type RunContext, stepState } from "./run-machine.ts";
import { snapshotAt } from "./run-restore.ts";
import { activeStepIds, advanceTimeline, restoredSnapshot, stepTimeline } from "./step-timeline.ts";

/** How a rerun starts: at step `from`, with the recorded results of the steps before it. */
export interface RerunPlan {
  rerunOf: RerunOf;
  definition: Workflow;
  snapshot: unknown;
  pending: string[];
  timeline: Record<string, StepTimes>;
}

const RERUNNABLE: ReadonlySet<TaskState> = new Set([TaskState.FAILED, TaskState.CANCELED]);
/** Where a run stopped: the first top-level step that did not complete (nor was gone around). */
const STOPPED: ReadonlySet<string> = new Set([
  StepStatus.FAILED,
  StepStatus.CANCELED,
  StepStatus.RUNNING,
  StepStatus.WAITING,
]);

/**
 * Pure: how run `record` starts again as a new run from top-level step `from` (by default where it
 * stopped), as DBOS forks a workflow and Temporal resets one: the steps before `from` are not run
 * again, their recorded results (approvals, forgiven failures and what compensated them included)
 * are the new run's.
 * Typed errors say what can be rerun instead.
 */
export function planRerun(record: RunRecord, from: string | undefined, now: string): RerunPlan {
  const { runId, definition } = record;
  if (!RERUNNABLE.has(record.state)) {
    const why =
      record.state === TaskState.COMPLETED
        ? "it completed; submit its workflow again for a new run"
        : record.state === TaskState.REJECTED
          ? "policy refused it; submit it again once policy allows it"
          : `it is still going; wait for it to end or cancel it (loom runs cancel ${runId})`;
    throw new LoomError(
      ErrorCode.RUN_NOT_RERUNNABLE,
      `run ${runId} is ${shortStateName(record.state)}: only a failed or canceled run can be rerun, and ${why}`,
    );
  }
  if (definition === undefined || record.snapshot === null || record.snapshot === undefined) {
    throw new LoomError(
      ErrorCode.RUN_NOT_RERUNNABLE,
      `run ${runId} was refused before it started a workflow: submit it again instead`,
    );
  }
  const topLevel = definition.steps.map((step) => step.id);
  const timeline = stepTimeline(record);
  // A failure the workflow forgives (`onError: {then: continue}`) is not where the run stopped.
  const forgiven = new Set(
    definition.steps.flatMap((step) =>
      "onError" in step && step.onError?.then === "continue" ? [step.id] : [],
    ),
  );
  const stoppedAt = timeline.findIndex(
    (view) =>
      view.parent === undefined &&
      STOPPED.has(view.state) &&
      !(view.state === StepStatus.FAILED && forgiven.has(view.stepId)),
  );
  const stopIndex =
    stoppedAt === -1 ? topLevel.length - 1 : topLevel.indexOf(timeline[stoppedAt]?.stepId ?? "");
  const start = from ?? topLevel[stopIndex];
  if (start === undefined) {
    throw new LoomError(ErrorCode.RUN_NOT_RERUNNABLE, `run ${runId} has no step to rerun from`);
  }
  const index = topLevel.indexOf(start);
  if (index === -1) {
    const nested = definition.steps.find(
      (step) =>
        ("parallel" in step && step.parallel.some((branch) => branch.id === start)) ||
        ("onError" in step &&
          (step.onError?.steps.some((compensation) => compensation.id === start) ?? false)),
    );
    if (nested !== undefined) {
      throw new LoomError(
        ErrorCode.INVALID_INPUT,
        `step ${start} is part of step ${nested.id}: rerun from ${nested.id}, which runs it again`,
      );
    }
    throw new LoomError(
      ErrorCode.STEP_NOT_FOUND,
      `workflow ${definition.id} v${definition.version} has no step ${start}${didYouMean(start, topLevel)}; its steps: ${topLevel.join(", ")}`,
      { details: { steps: topLevel } },
    );
  }
  if (index > stopIndex) {
    const stop = topLevel[stopIndex] as string;
    throw new LoomError(
      ErrorCode.INVALID_INPUT,
      `run ${runId} stopped at step ${stop}, so ${start} has no earlier results to start from: rerun from ${topLevel.slice(0, stopIndex + 1).join(", ")}`,
    );
  }
  const original = restoredSnapshot(record).context;
  const steps: Record<string, unknown> = {};
  const reused: string[] = [];
  for (const step of definition.steps.slice(0, index)) {
    const nested = [
      ...("parallel" in step ? step.parallel : []),
      ...("onError" in step && step.onError !== undefined ? step.onError.steps : []),
    ] as Step[];
    for (const kept of [step, ...nested]) {
      const name = ("as" in kept ? kept.as : undefined) ?? kept.id;
      if (!(name in original.steps)) continue;
      steps[name] = original.steps[name];
      reused.push(kept.id);
    }
  }
  const snapshot = startingSnapshot(definition, record.input, steps, definition.steps[index] as Step);
  return {
    rerunOf: { runId, from: start, reused },
    definition,
    snapshot: snapshot.persisted,
    pending: pendingEffects(definition, snapshot.view).map((effect) => effect.key),
    timeline: advanceTimeline({}, new Set(), activeStepIds(snapshot.view), now),
  };
}

/** The machine at step `step`, entered as the run before it would have entered it. */
function startingSnapshot(
  definition: Workflow,
  input: Record<string, unknown>,
  steps: Record<string, unknown>,
  step: Step,
) {
  const work =
    "parallel" in step
      ? step.parallel.map((branch) => branch.id)
      : "choice" in step || "approval" in step
        ? []
        : [step.id];
  const once = Object.fromEntries(work.map((stepId) => [stepId, 1]));
  const context: RunContext = { input, steps, attempts: once, tries: once, visits: once, approvals: {} };
  return snapshotAt(definition, stepState(step.id), context);
}
