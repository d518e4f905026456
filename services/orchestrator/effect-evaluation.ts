import type { Obligations } from "../../schemas/policy.ts";
import type { ApprovalStep, ChoiceStep, Workflow } from "../../schemas/workflow.ts";
import { jsonBytes, limitExceeded, toWireError } from "../kit/index.ts";
import { ALL_PERSONAL_DATA, MASK, maskValue, unionOfMasks } from "../kit/masking.ts";
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

/**
 * The approval's prompt, rendered, that people are asked: once from the run's data as it is, and
 * once from the same data masked first, for readers who may not see the run unmasked, with every
 * kind of personal data and every mask the active policy can require (`policyMasks`: fields and
 * patterns a policy adds). Whatever the expression derives from the data (an encoding, a reversal,
 * a piece) is then derived from masked values. A prompt that cannot be rendered from masked data
 * (an expression that needs the raw value, `$number($steps.contact.ssn)`) is shown to them as masked.
 */
export async function requestApproval(
  step: ApprovalStep,
  scope: ExpressionScope,
  policyMasks: Obligations,
): Promise<RunMachineEvent> {
  const where = `step ${step.id}: approval.prompt`;
  const prompt = String(await renderValue(step.approval.prompt, scope, where));
  const masks = unionOfMasks(ALL_PERSONAL_DATA, policyMasks);
  const maskedPrompt = await renderValue(step.approval.prompt, maskedScope(scope, masks), where).then(
    String,
    (error) =>
      maskValue(
        `${MASK} (the prompt could not be rendered from masked data: ${toWireError(error).message})`,
        masks,
      ) as string,
  );
  return { type: "APPROVAL.REQUESTED", stepId: step.id, prompt, maskedPrompt };
}

/** The scope with `masks` applied to what the run knows: input, results, memory. */
function maskedScope(scope: ExpressionScope, masks: Obligations): ExpressionScope {
  return {
    ...scope,
    input: maskValue(scope.input, masks) as ExpressionScope["input"],
    steps: maskValue(scope.steps, masks) as ExpressionScope["steps"],
    ...(scope.memory === undefined ? {} : { memory: maskValue(scope.memory, masks) as unknown[] }),
  };
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
