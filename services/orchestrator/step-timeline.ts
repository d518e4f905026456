import { TERMINAL_STATES } from "../../schemas/a2a.ts";
import { ErrorCode, type WireError, WireErrorSchema } from "../../schemas/errors.ts";
import type { RunRecord, StepTimes } from "../../schemas/run.ts";
import { StepStatus, type StepView, type WaitingInput, WaitingKind } from "../../schemas/run-read.ts";
import { type Step, stepKind } from "../../schemas/workflow.ts";
import { LoomError } from "../kit/index.ts";
import { MASK } from "../kit/masking.ts";
import {
  activeDemands,
  awaitedApprovals,
  awaitedElicitations,
  awaitedRemoteInputs,
  findStep,
  type RunSnapshotView,
} from "./demands.ts";
import { storedSnapshot } from "./run-restore.ts";

/** The run's machine snapshot as its record holds it, restored for reading (nothing is started). */
export function restoredSnapshot(record: RunRecord): RunSnapshotView {
  const { definition } = record;
  if (definition === undefined)
    throw new LoomError(ErrorCode.INTERNAL, `run ${record.runId} has no definition`);
  return storedSnapshot(definition, record);
}

/** Pure: the steps a snapshot is at (working, deciding, asking or waiting), by step id. */
export function activeStepIds(snapshot: RunSnapshotView): Set<string> {
  if (snapshot.status === "done") return new Set();
  return new Set(activeDemands(snapshot).flatMap((demand) => ("stepId" in demand ? [demand.stepId] : [])));
}

/**
 * Pure: the timeline after a transition from the steps `before` to the steps `after`: a step
 * entered starts now, a step left ends now; a step still at work (a retry) keeps its start.
 */
export function advanceTimeline(
  timeline: Record<string, StepTimes>,
  before: ReadonlySet<string>,
  after: ReadonlySet<string>,
  now: string,
): Record<string, StepTimes> {
  const next = { ...timeline };
  for (const stepId of after) if (!before.has(stepId)) next[stepId] = { startedAt: now };
  for (const stepId of before) {
    const times = next[stepId];
    if (!after.has(stepId) && times !== undefined) next[stepId] = { ...times, endedAt: now };
  }
  return next;
}

/** A step's recorded failure: `{error}` in `$steps`, as the machine records it. */
function failureOf(result: unknown): WireError | undefined {
  if (typeof result !== "object" || result === null || Object.keys(result).length !== 1) return undefined;
  const parsed = WireErrorSchema.safeParse((result as { error?: unknown }).error);
  return parsed.success ? parsed.data : undefined;
}

/** What a step calls, reads, renders or delegates to. */
function targetOf(step: Step): string | undefined {
  if ("call" in step) return step.call;
  if ("read" in step)
    return typeof step.read === "string" ? step.read : `${step.read.server}:${step.read.uri}`;
  if ("prompt" in step) return step.prompt;
  if ("delegate" in step) return step.delegate.agent ?? step.delegate.url;
  return undefined;
}

/** The steps in the workflow's order, each parallel branch and compensation step after its step. */
function orderedSteps(steps: Step[]): { step: Step; parent?: string }[] {
  return steps.flatMap((step) => [
    { step },
    ...("parallel" in step ? step.parallel.map((branch) => ({ step: branch as Step, parent: step.id })) : []),
    ...("onError" in step && step.onError !== undefined
      ? step.onError.steps.map((compensation) => ({ step: compensation as Step, parent: step.id }))
      : []),
  ]);
}

/**
 * Pure: each step of the run as a timeline entry, read from its snapshot (results, attempts, what
 * it waits for) and its recorded times. A run refused before it had a workflow has no steps.
 */
export function stepTimeline(record: RunRecord): StepView[] {
  const { definition } = record;
  if (definition === undefined || record.snapshot === null || record.snapshot === undefined) return [];
  const snapshot = restoredSnapshot(record);
  const { context } = snapshot;
  const active = activeStepIds(snapshot);
  const waiting = new Set([
    ...awaitedApprovals(snapshot),
    ...awaitedElicitations(snapshot),
    ...awaitedRemoteInputs(snapshot),
  ]);
  const ended = TERMINAL_STATES.has(record.state);
  const timeline = record.timeline ?? {};
  const reused = new Set(record.rerunOf?.reused ?? []);
  const views = orderedSteps(definition.steps).map(({ step, parent }): StepView => {
    const name = ("as" in step ? step.as : undefined) ?? step.id;
    const result = context.steps[name];
    const times = timeline[step.id];
    const attempts = context.attempts[step.id] ?? 0;
    const error = failureOf(result);
    const target = targetOf(step);
    const base = {
      stepId: step.id,
      kind: stepKind(step),
      ...(target === undefined ? {} : { target }),
      ...(parent === undefined ? {} : { parent }),
      attempts,
      ...(times === undefined ? {} : timesOf(times)),
      ...(error === undefined ? {} : { error }),
    };
    if (reused.has(step.id)) {
      return {
        ...base,
        state: StepStatus.COMPLETED,
        ...(record.rerunOf === undefined ? {} : { reusedFrom: record.rerunOf.runId }),
      };
    }
    if (active.has(step.id))
      return { ...base, state: waiting.has(step.id) ? StepStatus.WAITING : StepStatus.RUNNING };
    if (error !== undefined) return { ...base, state: StepStatus.FAILED };
    if (result !== undefined) return { ...base, state: StepStatus.COMPLETED };
    // A choice records nothing: entered and left, it decided.
    if (times?.endedAt !== undefined && "choice" in step) return { ...base, state: StepStatus.COMPLETED };
    if (times !== undefined || attempts > 0) return { ...base, state: StepStatus.CANCELED };
    return { ...base, state: ended ? StepStatus.SKIPPED : StepStatus.PENDING };
  });
  return views.map((view) => (view.kind === "parallel" ? parallelView(view, views) : view));
}

function timesOf(times: StepTimes): Pick<StepView, "startedAt" | "endedAt" | "durationMs"> {
  return {
    startedAt: times.startedAt,
    ...(times.endedAt === undefined
      ? {}
      : {
          endedAt: times.endedAt,
          durationMs: Math.max(0, Date.parse(times.endedAt) - Date.parse(times.startedAt)),
        }),
  };
}

/** A parallel step spans its branches: from the first start to the last end, busy while any is. */
function parallelView(view: StepView, views: StepView[]): StepView {
  const branches = views.filter(
    (candidate) => candidate.parent === view.stepId && candidate.kind !== "parallel",
  );
  const starts = branches.flatMap((branch) => (branch.startedAt === undefined ? [] : [branch.startedAt]));
  const ends = branches.flatMap((branch) => (branch.endedAt === undefined ? [] : [branch.endedAt]));
  const startedAt = starts.sort()[0];
  const endedAt = ends.length === branches.length ? ends.sort().at(-1) : undefined;
  // Its own record is its collected result, once every branch is done; until then the branches say.
  const state =
    view.state === StepStatus.COMPLETED
      ? view.state
      : ([StepStatus.WAITING, StepStatus.RUNNING, StepStatus.FAILED, StepStatus.CANCELED].find((candidate) =>
          branches.some((branch) => branch.state === candidate),
        ) ?? view.state);
  return {
    ...view,
    state,
    ...(startedAt === undefined ? {} : { startedAt }),
    ...(startedAt === undefined || endedAt === undefined
      ? {}
      : { endedAt, durationMs: Math.max(0, Date.parse(endedAt) - Date.parse(startedAt)) }),
  };
}

/**
 * What a run asks, with `maskedPrompt`, the prompt a reader who may not see the run unmasked is shown
 * (`maskedWaitingInput`): for an approval, rendered from masked data; for a question an MCP server or
 * a remote agent asks, its own text (masked for the reader as their events are).
 */
export type AskedInput = WaitingInput & { maskedPrompt: string };

/**
 * Pure: what a run waiting for input asks, for each step it waits on. `callerMayAnswer` is left
 * false: whether the reader may answer is policy's to say (see `run-reads.ts`).
 */
export function waitingInputs(record: RunRecord): AskedInput[] {
  const { definition } = record;
  if (definition === undefined || TERMINAL_STATES.has(record.state) || record.snapshot == null) return [];
  const snapshot = restoredSnapshot(record);
  const { context } = snapshot;
  const approvals = awaitedApprovals(snapshot).map((stepId): AskedInput => {
    const step = findStep(definition, stepId);
    return {
      stepId,
      kind: WaitingKind.APPROVAL,
      prompt: context.approvals[stepId] ?? "",
      // A run that asked before prompts were rendered twice has no masked rendering: none is shown.
      maskedPrompt: context.maskedApprovals?.[stepId] ?? MASK,
      roles: step !== undefined && "approval" in step ? step.approval.roles : [],
      callerMayAnswer: false,
    };
  });
  const elicitations = awaitedElicitations(snapshot).flatMap((stepId): AskedInput[] => {
    const question = context.elicitations?.[stepId];
    if (question === undefined) return [];
    return [
      {
        stepId,
        kind: WaitingKind.ELICITATION,
        prompt: question.message,
        maskedPrompt: question.message,
        server: question.server,
        requestedSchema: question.requestedSchema,
        roles: [],
        callerMayAnswer: false,
      },
    ];
  });
  const remote = awaitedRemoteInputs(snapshot).map((stepId): AskedInput => {
    const prompt = context.remoteInputs?.[stepId]?.prompt ?? "";
    return {
      stepId,
      kind: WaitingKind.REMOTE_INPUT,
      prompt,
      maskedPrompt: prompt,
      roles: [],
      callerMayAnswer: false,
    };
  });
  return [...approvals, ...elicitations, ...remote];
}
