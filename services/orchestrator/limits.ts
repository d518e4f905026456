import type { Step, Workflow } from "../../schemas/workflow.ts";
import { jsonBytes, limitExceeded } from "../kit/index.ts";

/** Bounds on what a caller sends: a run's input, a definition, a workflow's steps. */
export interface RunLimits {
  maxInputBytes: number;
  maxDefinitionBytes: number;
  maxSteps: number;
}

export const DEFAULT_LIMITS: RunLimits = {
  maxInputBytes: 64 * 1024,
  maxDefinitionBytes: 256 * 1024,
  maxSteps: 256,
};

/** Refuses a run input over `LOOM_MAX_INPUT_BYTES`. */
export function assertInputWithin(input: unknown, limits: RunLimits): void {
  const bytes = jsonBytes(input);
  if (bytes > limits.maxInputBytes) {
    throw limitExceeded("the run's input (JSON bytes)", "LOOM_MAX_INPUT_BYTES", bytes, limits.maxInputBytes);
  }
}

/** Refuses a raw definition over `LOOM_MAX_DEFINITION_BYTES`, before any parsing work is spent on it. */
export function assertDefinitionSizeWithin(raw: unknown, limits: RunLimits): void {
  const bytes = jsonBytes(raw);
  if (bytes > limits.maxDefinitionBytes) {
    throw limitExceeded(
      "the workflow definition (JSON bytes)",
      "LOOM_MAX_DEFINITION_BYTES",
      bytes,
      limits.maxDefinitionBytes,
    );
  }
}

/** Refuses a workflow with more steps than `LOOM_MAX_STEPS`, parallel branches and compensations included. */
export function assertStepsWithin(workflow: Workflow, limits: RunLimits): void {
  const steps = allSteps(workflow.steps).length;
  if (steps > limits.maxSteps) {
    throw limitExceeded(`workflow ${workflow.id}'s step count`, "LOOM_MAX_STEPS", steps, limits.maxSteps);
  }
}

/** Every step of a list, parallel branches and compensation steps included, depth first. */
export function allSteps(steps: readonly Step[]): Step[] {
  return steps.flatMap((step) => [
    step,
    ...("parallel" in step ? allSteps(step.parallel) : []),
    ...("onError" in step && step.onError !== undefined ? allSteps(step.onError.steps) : []),
  ]);
}
