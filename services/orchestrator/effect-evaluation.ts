import type { ApprovalStep, ChoiceStep, Workflow } from "../../schemas/workflow.ts";
import { jsonBytes, limitExceeded, toWireError } from "../kit/index.ts";
import { type ExpressionScope, renderValue } from "./expressions.ts";
import { NEXT_STEP, type RunMachineEvent } from "./run-machine.ts";

/**
 * The effects a run performs without leaving the process: deciding a choice, rendering an
 * approval's prompt, building the run's output. No I/O; each is a function of the step and the
 * run's scope, and comes back as the machine event it leads to.
 */

/** The first branch whose `when` holds, else the default (or the next step). */
export async function decideChoice(step: ChoiceStep, scope: ExpressionScope): Promise<RunMachineEvent> {
  for (const branch of step.choice) {
    if ((await renderValue(branch.when, scope, `step ${step.id}: when`)) === true) {
      return { type: "CHOICE.DECIDED", stepId: step.id, target: branch.goto };
    }
  }
  return { type: "CHOICE.DECIDED", stepId: step.id, target: step.default ?? NEXT_STEP };
}

/** The approval's prompt, rendered, that people are asked. */
export async function requestApproval(step: ApprovalStep, scope: ExpressionScope): Promise<RunMachineEvent> {
  const prompt = String(await renderValue(step.approval.prompt, scope, `step ${step.id}: approval.prompt`));
  return { type: "APPROVAL.REQUESTED", stepId: step.id, prompt };
}

/**
 * The run's output: its `output` expression, or the last step's result. It is written into the
 * run's record, so one too large to store fails the run here rather than every replica that would
 * take the run over, again and again.
 */
export async function buildOutput(
  workflow: Workflow,
  scope: ExpressionScope,
  maxResultBytes: number,
): Promise<RunMachineEvent> {
  try {
    const { output, steps } = workflow;
    const last = steps.at(-1);
    const value =
      output === undefined
        ? last === undefined
          ? null
          : scope.steps[("as" in last ? last.as : undefined) ?? last.id]
        : await renderValue(output, scope, "output");
    const bytes = jsonBytes(value ?? null);
    if (bytes > maxResultBytes) {
      throw limitExceeded(
        "the run's output (JSON bytes)",
        "LOOM_EXPRESSION_MAX_RESULT_BYTES",
        bytes,
        maxResultBytes,
      );
    }
    return { type: "OUTPUT.READY", output: value ?? null };
  } catch (error) {
    return { type: "OUTPUT.FAILED", error: toWireError(error) };
  }
}
