import { assign, setup } from "xstate";
import { TaskState } from "../../schemas/a2a.ts";
import { ErrorCode, RETRYABLE_CODES, type WireError } from "../../schemas/errors.ts";
import type { CallStep, Workflow } from "../../schemas/workflow.ts";

/** Everything a run knows; persisted with its snapshot. Holds results, never in-flight promises. */
export interface RunContext {
  input: Record<string, unknown>;
  /** Results by step id. */
  steps: Record<string, unknown>;
  /** The attempt in progress (1-based) by step id. */
  attempts: Record<string, number>;
  output?: unknown;
  error?: WireError;
}

/** Results of the effects the driver performs, fed back into the machine. */
export type RunMachineEvent =
  | { type: "STEP.SUCCEEDED"; stepId: string; result: unknown }
  | { type: "STEP.FAILED"; stepId: string; error: WireError }
  | { type: "OUTPUT.READY"; output: unknown }
  | { type: "OUTPUT.FAILED"; error: WireError };

export const OUTPUT_STATE = "output";
export const FinalState = { COMPLETED: "completed", FAILED: "failed", REJECTED: "rejected" } as const;
export type FinalState = (typeof FinalState)[keyof typeof FinalState];

const STEP_STATE_PREFIX = "step:";

export function stepStateName(stepId: string): string {
  return `${STEP_STATE_PREFIX}${stepId}`;
}

/** The step id a state value stands for, if it is a step state. */
export function stepIdOfState(value: unknown): string | undefined {
  return typeof value === "string" && value.startsWith(STEP_STATE_PREFIX)
    ? value.slice(STEP_STATE_PREFIX.length)
    : undefined;
}

export const FINAL_TASK_STATE: Record<FinalState, TaskState> = {
  completed: TaskState.COMPLETED,
  failed: TaskState.FAILED,
  rejected: TaskState.REJECTED,
};

/**
 * Compiles a workflow into a state machine with no side effects: each step is a state that waits
 * for its result event. The driver performs the call the state stands for and sends the outcome,
 * so a restored snapshot never re-runs a call by itself.
 */
export function compileWorkflow(workflow: Workflow) {
  const machine = setup({
    types: {
      context: {} as RunContext,
      events: {} as RunMachineEvent,
      input: {} as { input: Record<string, unknown> },
    },
  });

  const stepStates = Object.fromEntries(
    workflow.steps.map((step, index) => {
      const next = workflow.steps[index + 1];
      return [
        stepStateName(step.id),
        stepState(step, next === undefined ? OUTPUT_STATE : stepStateName(next.id)),
      ];
    }),
  );
  const first = workflow.steps[0];

  return machine.createMachine({
    id: `${workflow.id}@${workflow.version}`,
    initial: first === undefined ? OUTPUT_STATE : stepStateName(first.id),
    context: ({ input }) => ({
      input: input.input,
      steps: {},
      attempts: first === undefined ? {} : { [first.id]: 1 },
    }),
    states: {
      ...stepStates,
      [OUTPUT_STATE]: {
        on: {
          "OUTPUT.READY": {
            target: FinalState.COMPLETED,
            actions: assign({ output: ({ event }) => event.output }),
          },
          "OUTPUT.FAILED": {
            target: FinalState.FAILED,
            actions: assign({ error: ({ event }) => event.error }),
          },
        },
      },
      [FinalState.COMPLETED]: { type: "final" },
      [FinalState.FAILED]: { type: "final" },
      [FinalState.REJECTED]: { type: "final" },
    },
  });
}

function stepState(step: CallStep, next: string) {
  const maxAttempts = step.retry?.max ?? 1;
  const nextStepId = stepIdOfState(next);
  const isThisStep = ({ event }: { event: { stepId: string } }) => event.stepId === step.id;
  return {
    on: {
      "STEP.SUCCEEDED": {
        guard: isThisStep,
        target: next,
        actions: assign(({ context, event }: { context: RunContext; event: RunMachineEvent }) => ({
          steps: { ...context.steps, [step.id]: event.type === "STEP.SUCCEEDED" ? event.result : undefined },
          attempts: nextStepId === undefined ? context.attempts : { ...context.attempts, [nextStepId]: 1 },
        })),
      },
      "STEP.FAILED": [
        {
          guard: ({ context, event }: { context: RunContext; event: RunMachineEvent }) =>
            event.type === "STEP.FAILED" &&
            event.stepId === step.id &&
            RETRYABLE_CODES.has(event.error.code) &&
            (context.attempts[step.id] ?? 1) < maxAttempts,
          target: stepStateName(step.id),
          reenter: true,
          actions: assign({
            attempts: ({ context }: { context: RunContext }) => ({
              ...context.attempts,
              [step.id]: (context.attempts[step.id] ?? 1) + 1,
            }),
          }),
        },
        {
          guard: ({ event }: { event: RunMachineEvent }) =>
            event.type === "STEP.FAILED" &&
            event.stepId === step.id &&
            event.error.code === ErrorCode.POLICY_DENIED,
          target: FinalState.REJECTED,
          actions: assign({ error: ({ event }: { event: RunMachineEvent }) => errorOf(event) }),
        },
        {
          guard: isThisStep,
          target: FinalState.FAILED,
          actions: assign({ error: ({ event }: { event: RunMachineEvent }) => errorOf(event) }),
        },
      ],
    },
  };
}

function errorOf(event: RunMachineEvent): WireError | undefined {
  return "error" in event ? event.error : undefined;
}

export type RunMachine = ReturnType<typeof compileWorkflow>;
