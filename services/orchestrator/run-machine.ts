import { assign, setup } from "xstate";
import { ErrorCode, RETRYABLE_CODES, type WireError } from "../../schemas/errors.ts";
import type { InputAnswer, PendingElicitation, RunContext } from "../../schemas/run-context.ts";
import type { ElicitAnswer } from "../../schemas/sampling.ts";
import type {
  ApprovalStep,
  ChoiceStep,
  OnError,
  ParallelStep,
  Step,
  Workflow,
  WorkStep,
} from "../../schemas/workflow.ts";

export type { InputAnswer, PendingElicitation, RemoteInput, RunContext } from "../../schemas/run-context.ts";

/** Outcomes of the effects the driver performs, and requests from outside, fed to the machine. */
export type RunMachineEvent =
  | { type: "STEP.SUCCEEDED"; stepId: string; result: unknown }
  | { type: "STEP.FAILED"; stepId: string; error: WireError }
  /** A delegate step's remote agent asks for input: the run waits for someone to answer. */
  | { type: "STEP.INPUT_REQUIRED"; stepId: string; prompt: string; remoteTaskId: string }
  | { type: "STEP.INPUT_GIVEN"; stepId: string; answer: InputAnswer }
  /** An MCP server asks the run's user for input during the step's tool call. */
  | { type: "STEP.ELICIT"; stepId: string; elicitation: PendingElicitation }
  | { type: "STEP.ELICIT_ANSWERED"; stepId: string; answer: ElicitAnswer }
  | { type: "CHOICE.DECIDED"; stepId: string; target: string }
  /** `maskedPrompt`: the prompt rendered from the run's data with all personal data masked first. */
  | { type: "APPROVAL.REQUESTED"; stepId: string; prompt: string; maskedPrompt: string }
  | { type: "APPROVAL.ANSWERED"; stepId: string; approved: boolean; by: string; comment?: string }
  | { type: "OUTPUT.READY"; output: unknown }
  | { type: "OUTPUT.FAILED"; error: WireError }
  | { type: "RUN.CANCEL"; by: string }
  | { type: "RUN.EXPIRED" };

/** What an active state asks of the driver, read from its `meta`. */
export type StateDemand =
  | { effect: "work"; stepId: string }
  | { effect: "choice"; stepId: string }
  | { effect: "approval-request"; stepId: string }
  | { effect: "output" }
  | { wait: "approval"; stepId: string };

export const FinalState = {
  COMPLETED: "completed",
  FAILED: "failed",
  REJECTED: "rejected",
  CANCELED: "canceled",
} as const;
export type FinalState = (typeof FinalState)[keyof typeof FinalState];

export const MACHINE_ID = "run";
const OUTPUT = "output";
const root = (state: string) => `#${MACHINE_ID}.${state}`;
export const stepState = (stepId: string) => `s:${stepId}`;

const machineSetup = setup({
  types: {
    context: {} as RunContext,
    events: {} as RunMachineEvent,
    input: {} as { input: Record<string, unknown> },
  },
  guards: {
    isStep: ({ event }, params: { stepId: string }) => "stepId" in event && event.stepId === params.stepId,
    canRetry: (
      { context, event },
      params: { stepId: string; max: number; on: readonly string[] | undefined },
    ) =>
      event.type === "STEP.FAILED" &&
      event.stepId === params.stepId &&
      (params.on === undefined
        ? RETRYABLE_CODES.has(event.error.code)
        : params.on.includes(event.error.code)) &&
      (context.tries[params.stepId] ?? 1) < params.max,
    isDenied: ({ event }, params: { stepId: string }) =>
      event.type === "STEP.FAILED" &&
      event.stepId === params.stepId &&
      event.error.code === ErrorCode.POLICY_DENIED,
    choseTarget: ({ event }, params: { stepId: string; target: string }) =>
      event.type === "CHOICE.DECIDED" && event.stepId === params.stepId && event.target === params.target,
    answered: ({ event }, params: { stepId: string; approved: boolean }) =>
      event.type === "APPROVAL.ANSWERED" &&
      event.stepId === params.stepId &&
      event.approved === params.approved,
  },
  actions: {
    enterWork: assign(({ context }, params: { stepId: string }) => ({
      attempts: { ...context.attempts, [params.stepId]: (context.attempts[params.stepId] ?? 0) + 1 },
      tries: { ...context.tries, [params.stepId]: 1 },
      visits: { ...context.visits, [params.stepId]: (context.visits[params.stepId] ?? 0) + 1 },
    })),
    retry: assign(({ context }, params: { stepId: string }) => ({
      attempts: { ...context.attempts, [params.stepId]: (context.attempts[params.stepId] ?? 0) + 1 },
      tries: { ...context.tries, [params.stepId]: (context.tries[params.stepId] ?? 1) + 1 },
    })),
    recordResult: assign(({ context, event }, params: { name: string }) => {
      const { [event.type === "STEP.SUCCEEDED" ? event.stepId : ""]: _done, ...remoteInputs } =
        context.remoteInputs ?? {};
      return {
        steps: { ...context.steps, [params.name]: "result" in event ? event.result : null },
        remoteInputs,
      };
    }),
    recordRemoteInput: assign(({ context, event }) =>
      event.type === "STEP.INPUT_REQUIRED"
        ? {
            remoteInputs: {
              ...context.remoteInputs,
              [event.stepId]: { prompt: event.prompt, remoteTaskId: event.remoteTaskId },
            },
          }
        : {},
    ),
    /** The answer goes out as a new attempt of the same step, which carries it to the remote task. */
    recordRemoteAnswer: assign(({ context, event }) => {
      const waiting = event.type === "STEP.INPUT_GIVEN" ? context.remoteInputs?.[event.stepId] : undefined;
      if (event.type !== "STEP.INPUT_GIVEN" || waiting === undefined) return {};
      return {
        remoteInputs: { ...context.remoteInputs, [event.stepId]: { ...waiting, answer: event.answer } },
        attempts: { ...context.attempts, [event.stepId]: (context.attempts[event.stepId] ?? 0) + 1 },
      };
    }),
    recordElicitation: assign(({ context, event }) =>
      event.type === "STEP.ELICIT"
        ? { elicitations: { ...context.elicitations, [event.stepId]: event.elicitation } }
        : {},
    ),
    forgetElicitation: assign(({ context, event }) => {
      if (event.type !== "STEP.ELICIT_ANSWERED") return {};
      const { [event.stepId]: _answered, ...elicitations } = context.elicitations ?? {};
      return { elicitations };
    }),
    recordFailure: assign(({ context, event }, params: { name: string }) =>
      event.type === "STEP.FAILED"
        ? { error: event.error, steps: { ...context.steps, [params.name]: { error: event.error } } }
        : {},
    ),
    /** After `onError: {then: continue}` the run goes on; the failure stays visible in `$steps`. */
    forgiveFailure: assign(() => ({ error: undefined })),
    collectBranches: assign(({ context }, params: { name: string; branches: string[] }) => ({
      steps: {
        ...context.steps,
        [params.name]: Object.fromEntries(params.branches.map((name) => [name, context.steps[name]])),
      },
    })),
    recordPrompt: assign(({ context, event }) =>
      event.type === "APPROVAL.REQUESTED"
        ? {
            approvals: { ...context.approvals, [event.stepId]: event.prompt },
            maskedApprovals: { ...context.maskedApprovals, [event.stepId]: event.maskedPrompt },
          }
        : {},
    ),
    recordAnswer: assign(({ context, event }, params: { name: string }) => {
      if (event.type !== "APPROVAL.ANSWERED") return {};
      const { [event.stepId]: _answered, ...approvals } = context.approvals;
      const { [event.stepId]: _masked, ...maskedApprovals } = context.maskedApprovals ?? {};
      const answer = {
        approved: event.approved,
        by: event.by,
        ...(event.comment === undefined ? {} : { comment: event.comment }),
      };
      return { approvals, maskedApprovals, steps: { ...context.steps, [params.name]: answer } };
    }),
    rejectApproval: assign(({ event }) =>
      event.type === "APPROVAL.ANSWERED"
        ? {
            error: {
              code: ErrorCode.APPROVAL_REJECTED,
              message: `approval ${event.stepId} rejected by ${event.by}`,
            },
          }
        : {},
    ),
    recordOutput: assign(({ event }) => (event.type === "OUTPUT.READY" ? { output: event.output } : {})),
    recordOutputFailure: assign(({ event }) =>
      event.type === "OUTPUT.FAILED" ? { error: event.error } : {},
    ),
    recordCancel: assign(({ event }) =>
      event.type === "RUN.CANCEL"
        ? { error: { code: ErrorCode.CANCELED, message: `run canceled by ${event.by}` } }
        : {},
    ),
    recordExpiry: assign(() => ({
      error: { code: ErrorCode.DEADLINE_EXCEEDED, message: "the run passed its workflow's deadline" },
    })),
  },
});

type NodeConfig = Record<string, unknown>;

/**
 * Compiles a workflow into a state machine with no side effects. A state that needs work done
 * says so in its `meta`; the driver performs it and sends the outcome as an event. A restored
 * snapshot therefore never re-runs anything by itself.
 */
export function compileWorkflow(workflow: Workflow) {
  const states: Record<string, NodeConfig> = {};
  workflow.steps.forEach((step, index) => {
    const next = workflow.steps[index + 1];
    states[stepState(step.id)] = compileStep(
      step,
      next === undefined ? root(OUTPUT) : root(stepState(next.id)),
    );
  });
  states[OUTPUT] = {
    meta: { effect: "output" } satisfies StateDemand,
    on: {
      "OUTPUT.READY": { target: FinalState.COMPLETED, actions: "recordOutput" },
      "OUTPUT.FAILED": { target: FinalState.FAILED, actions: "recordOutputFailure" },
    },
  };
  for (const final of Object.values(FinalState)) states[final] = { type: "final" };
  const first = workflow.steps[0];
  return machineSetup.createMachine({
    id: MACHINE_ID,
    initial: first === undefined ? OUTPUT : stepState(first.id),
    context: ({ input }) => ({
      input: input.input,
      steps: {},
      attempts: {},
      tries: {},
      visits: {},
      approvals: {},
    }),
    on: {
      "RUN.CANCEL": { target: `.${FinalState.CANCELED}`, actions: "recordCancel" },
      "RUN.EXPIRED": { target: `.${FinalState.FAILED}`, actions: "recordExpiry" },
    },
    states: states as never,
  });
}

function compileStep(step: Step, next: string): NodeConfig {
  if ("choice" in step) return choiceState(step, next);
  if ("approval" in step) return approvalState(step, next);
  const path = stepState(step.id);
  const onFail = step.onError === undefined ? root(FinalState.FAILED) : root(`${path}.compensate`);
  const run = "parallel" in step ? parallelState(step, next, onFail) : workState(step, next, onFail);
  return {
    initial: "run",
    states: {
      run,
      ...(step.onError === undefined ? {} : { compensate: compensationState(step.onError, next) }),
    },
  };
}

/** One piece of work: its result moves the run on; a failure is retried, compensated or fatal. */
function workState(step: WorkStep, onSuccess: string, onFail: string): NodeConfig {
  const name = step.as ?? step.id;
  const stepId = step.id;
  return {
    meta: { effect: "work", stepId } satisfies StateDemand,
    entry: { type: "enterWork", params: { stepId } },
    on: {
      "STEP.SUCCEEDED": {
        guard: { type: "isStep", params: { stepId } },
        target: onSuccess,
        actions: { type: "recordResult", params: { name } },
      },
      "STEP.INPUT_REQUIRED": { guard: { type: "isStep", params: { stepId } }, actions: "recordRemoteInput" },
      "STEP.INPUT_GIVEN": { guard: { type: "isStep", params: { stepId } }, actions: "recordRemoteAnswer" },
      "STEP.ELICIT": { guard: { type: "isStep", params: { stepId } }, actions: "recordElicitation" },
      "STEP.ELICIT_ANSWERED": { guard: { type: "isStep", params: { stepId } }, actions: "forgetElicitation" },
      "STEP.FAILED": [
        {
          guard: { type: "canRetry", params: { stepId, max: step.retry?.max ?? 1, on: step.retry?.on } },
          actions: { type: "retry", params: { stepId } },
        },
        {
          guard: { type: "isDenied", params: { stepId } },
          target: root(FinalState.REJECTED),
          actions: { type: "recordFailure", params: { name } },
        },
        {
          guard: { type: "isStep", params: { stepId } },
          target: onFail,
          actions: { type: "recordFailure", params: { name } },
        },
      ],
    },
  };
}

function parallelState(step: ParallelStep, next: string, onFail: string): NodeConfig {
  const branches = Object.fromEntries(
    step.parallel.map((branch) => {
      const region = `b:${branch.id}`;
      return [
        region,
        { initial: "work", states: { work: workState(branch, "done", onFail), done: { type: "final" } } },
      ];
    }),
  );
  return {
    type: "parallel",
    states: branches,
    onDone: {
      target: next,
      actions: {
        type: "collectBranches",
        params: { name: step.as ?? step.id, branches: step.parallel.map((branch) => branch.as ?? branch.id) },
      },
    },
  };
}

/** Compensation steps one after another; then the run fails (with the original error) or goes on. */
function compensationState(onError: OnError, next: string): NodeConfig {
  const after = onError.then === "continue" ? next : root(FinalState.FAILED);
  const states: Record<string, NodeConfig> = {};
  onError.steps.forEach((step, index) => {
    const following = onError.steps[index + 1];
    const target = following === undefined ? "done" : `c:${following.id}`;
    states[`c:${step.id}`] = workState(step, target, root(FinalState.FAILED));
  });
  states.done = {
    always: { target: after, ...(onError.then === "continue" ? { actions: "forgiveFailure" } : {}) },
  };
  const first = onError.steps[0];
  return { initial: first === undefined ? "done" : `c:${first.id}`, states };
}

function choiceState(step: ChoiceStep, next: string): NodeConfig {
  const targets = new Set([
    ...step.choice.map((branch) => branch.goto),
    ...(step.default === undefined ? [] : [step.default]),
  ]);
  return {
    meta: { effect: "choice", stepId: step.id } satisfies StateDemand,
    on: {
      "CHOICE.DECIDED": [
        ...[...targets].map((target) => ({
          guard: { type: "choseTarget", params: { stepId: step.id, target } },
          target: root(stepState(target)),
        })),
        { guard: { type: "choseTarget", params: { stepId: step.id, target: NEXT_STEP } }, target: next },
      ],
      "STEP.FAILED": failsTheRun(step.id),
    },
  };
}

/** A condition or prompt that cannot be evaluated ends the run: nothing would ever decide it. */
function failsTheRun(stepId: string): NodeConfig {
  return {
    guard: { type: "isStep", params: { stepId } },
    target: root(FinalState.FAILED),
    actions: { type: "recordFailure", params: { name: stepId } },
  };
}

/** The target a choice sends when no condition holds and it names no default. */
export const NEXT_STEP = "(next)";

function approvalState(step: ApprovalStep, next: string): NodeConfig {
  const { onReject } = step.approval;
  const rejected: { target: string; actions?: string[] } =
    onReject === "reject"
      ? { target: root(FinalState.REJECTED), actions: ["rejectApproval"] }
      : onReject === "fail"
        ? { target: root(FinalState.FAILED), actions: ["rejectApproval"] }
        : { target: root(stepState(onReject.goto)) };
  const name = step.as ?? step.id;
  return {
    initial: "request",
    states: {
      request: {
        meta: { effect: "approval-request", stepId: step.id } satisfies StateDemand,
        on: {
          "APPROVAL.REQUESTED": {
            guard: { type: "isStep", params: { stepId: step.id } },
            target: "waiting",
            actions: "recordPrompt",
          },
          "STEP.FAILED": failsTheRun(step.id),
        },
      },
      waiting: {
        meta: { wait: "approval", stepId: step.id } satisfies StateDemand,
        on: {
          "APPROVAL.ANSWERED": [
            {
              guard: { type: "answered", params: { stepId: step.id, approved: true } },
              target: next,
              actions: { type: "recordAnswer", params: { name } },
            },
            {
              guard: { type: "answered", params: { stepId: step.id, approved: false } },
              ...rejected,
              actions: [{ type: "recordAnswer", params: { name } }, ...(rejected.actions ?? [])],
            },
          ],
        },
      },
    },
  };
}

export type RunMachine = ReturnType<typeof compileWorkflow>;

const COMPILED_CACHE_SIZE = 256;
const compiled = new Map<string, RunMachine>();

/**
 * `compileWorkflow`, remembered by the definition's content: every transition of every run
 * restores a machine, and definitions are few. The least recently used one goes first.
 */
export function machineFor(workflow: Workflow): RunMachine {
  const key = JSON.stringify(workflow);
  let machine = compiled.get(key);
  if (machine === undefined) {
    machine = compileWorkflow(workflow);
    if (compiled.size >= COMPILED_CACHE_SIZE) compiled.delete(compiled.keys().next().value as string);
  } else {
    compiled.delete(key);
  }
  compiled.set(key, machine);
  return machine;
}
