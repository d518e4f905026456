import { type Actor, createActor, type StateValue } from "xstate";
import { ErrorCode } from "../../schemas/errors.ts";
import type { RunRecord, StepTimes } from "../../schemas/run.ts";
import { RunContextSchema } from "../../schemas/run-context.ts";
import type { Workflow } from "../../schemas/workflow.ts";
import { describeIssues, LoomError } from "../kit/index.ts";
import { pendingEffects } from "./demands.ts";
import { machineFor, type RunContext } from "./run-machine.ts";
import { activeStepIds, advanceTimeline } from "./step-timeline.ts";

/** A run's machine, started from its snapshot: what an execution drives. */
export type RunActor = Actor<ReturnType<typeof machineFor>>;

/**
 * The one place a run's actor is made. A stored snapshot's context is parsed first, so a record
 * another version wrote, or someone edited, fails here with a typed error naming the run, not
 * half-way through a step.
 */
function actorOf(definition: Workflow, record: Pick<RunRecord, "runId" | "snapshot" | "input">): RunActor {
  const snapshot = record.snapshot as { context?: unknown } | undefined;
  const context = RunContextSchema.safeParse(snapshot?.context);
  if (!context.success) {
    throw new LoomError(
      ErrorCode.INVALID_MESSAGE,
      `run ${record.runId}: its stored snapshot is malformed: ${describeIssues(context.error.issues)}`,
    );
  }
  return createActor(machineFor(definition), {
    // The snapshot was made by this same definition, which the record pins.
    snapshot: { ...snapshot, context: context.data } as never,
    input: { input: record.input },
  });
}

/** The run's actor, restored from its record and started (nothing runs: effects are the driver's). */
export function restoreRun(definition: Workflow, record: RunRecord): RunActor {
  return actorOf(definition, record).start();
}

/** The run's state as its record holds it, for reading what it waits for; nothing is started. */
export function storedSnapshot(definition: Workflow, record: RunRecord) {
  return actorOf(definition, record).getSnapshot();
}

/**
 * The machine put at `state` with `context`, not started: what a rerun from a step begins with,
 * as the view its effects are read from and the snapshot its record holds.
 */
export function snapshotAt(definition: Workflow, state: StateValue, context: RunContext) {
  const machine = machineFor(definition);
  const actor = createActor(machine, {
    snapshot: machine.resolveState({ value: state, context }),
    input: { input: context.input },
  });
  return { view: actor.getSnapshot(), persisted: actor.getPersistedSnapshot() };
}

/** The persisted snapshot, pending effects and timeline (its first steps start `now`) of a new run. */
export function initialState(
  workflow: Workflow,
  input: Record<string, unknown>,
  now: string,
): { snapshot: unknown; pending: string[]; timeline: Record<string, StepTimes> } {
  const actor = createActor(machineFor(workflow), { input: { input } }).start();
  const pending = pendingEffects(workflow, actor.getSnapshot()).map((effect) => effect.key);
  const timeline = advanceTimeline({}, new Set(), activeStepIds(actor.getSnapshot()), now);
  const snapshot = actor.getPersistedSnapshot();
  actor.stop();
  return { snapshot, pending, timeline };
}
