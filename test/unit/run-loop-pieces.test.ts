import { describe, expect, it } from "vitest";
import { TaskState } from "../../schemas/a2a.ts";
import { ErrorCode } from "../../schemas/errors.ts";
import type { RunRecord } from "../../schemas/run.ts";
import type { Workflow } from "../../schemas/workflow.ts";
import { LoomError } from "../../services/kit/index.ts";
import { NO_MASKS } from "../../services/kit/masking.ts";
import { buildOutput, decideChoice, requestApproval } from "../../services/orchestrator/effect-evaluation.ts";
import { DEFAULT_EXPRESSION_LIMITS } from "../../services/orchestrator/expressions.ts";
import { announcementOf, runEnded, stepStarted } from "../../services/orchestrator/run-announcements.ts";
import { FinalState, NEXT_STEP } from "../../services/orchestrator/run-machine.ts";
import { initialState, restoreRun, storedSnapshot } from "../../services/orchestrator/run-restore.ts";
import { parseWorkflow } from "../../services/orchestrator/workflow-catalog.ts";

const workflow: Workflow = parseWorkflow(
  {
    id: "pieces",
    steps: [
      { id: "contact", call: "crm.get_contact", with: { id: "{% $input.id %}" } },
      { id: "route", choice: [{ when: "{% $steps.contact.vip %}", goto: "approve" }] },
      { id: "approve", approval: { prompt: "Escalate {% $steps.contact.name %}?", roles: ["manager"] } },
    ],
    output: "{% $steps.contact.name %}",
  },
  "test",
);
const scope = (steps: Record<string, unknown>) => ({
  input: { id: "c-1" },
  steps,
  limits: DEFAULT_EXPRESSION_LIMITS,
});

function record(overrides: Partial<RunRecord> = {}): RunRecord {
  return {
    runId: "r-1",
    contextId: "ctx",
    workflowId: workflow.id,
    input: { id: "c-1" },
    state: TaskState.WORKING,
    ...initialState(workflow, { id: "c-1" }, "2026-01-01T00:00:00.000Z"),
    createdAt: "2026-01-01T00:00:00.000Z",
    updatedAt: "2026-01-01T00:00:01.000Z",
    ...overrides,
  };
}

describe("run loop - restoring a snapshot", () => {
  it("run loop - a stored snapshot whose context is malformed is refused, naming the run", () => {
    const stored = record();
    const snapshot = { ...(stored.snapshot as object), context: { input: {}, steps: "not a map" } };
    expect(() => restoreRun(workflow, { ...stored, snapshot })).toThrow(LoomError);
    expect(() => storedSnapshot(workflow, { ...stored, snapshot })).toThrow(
      /run r-1: its stored snapshot is malformed/,
    );
  });

  it("run loop - control: a snapshot the machine made restores to the step it waits on", () => {
    const actor = restoreRun(workflow, record());
    expect(actor.getSnapshot().context.attempts).toEqual({ contact: 1 });
    actor.stop();
  });
});

describe("run loop - pure evaluation", () => {
  const [, choice, approval] = workflow.steps;
  it("run loop - a choice takes the first branch that holds, else the next step", async () => {
    if (choice === undefined || !("choice" in choice)) throw new Error("no choice step");
    expect(await decideChoice(choice, scope({ contact: { vip: true } }))).toEqual({
      type: "CHOICE.DECIDED",
      stepId: "route",
      target: "approve",
    });
    expect(await decideChoice(choice, scope({ contact: { vip: false } }))).toMatchObject({
      target: NEXT_STEP,
    });
  });

  it("run loop - an approval's prompt is rendered from the run's steps", async () => {
    if (approval === undefined || !("approval" in approval)) throw new Error("no approval step");
    expect(await requestApproval(approval, scope({ contact: { name: "Ann" } }), NO_MASKS)).toEqual({
      type: "APPROVAL.REQUESTED",
      stepId: "approve",
      prompt: "Escalate Ann?",
      maskedPrompt: "Escalate Ann?",
    });
  });

  it("run loop - an approval's prompt is rendered again from masked data, whatever it derives from it", async () => {
    const contact = {
      name: "Ann",
      email: "ann@example.com",
      ssn: "123-45-6789",
      note: "call +1 415 555 0100",
    };
    const rendered = async (prompt: string, policyMasks = NO_MASKS) => {
      const steps = [
        { id: "contact", call: "crm.get_contact" },
        { id: "ok", approval: { prompt, roles: ["manager"] } },
      ];
      const step = parseWorkflow({ id: "p", steps }, "test").steps[1];
      if (step === undefined || !("approval" in step)) throw new Error("no approval step");
      const event = await requestApproval(step, scope({ contact }), policyMasks);
      if (event.type !== "APPROVAL.REQUESTED") throw new Error(event.type);
      return event;
    };
    const reversed = await rendered("{% $reverse($split($steps.contact.ssn, '')) ~> $join %}");
    expect(reversed.prompt).toBe("9876-54-321");
    expect(reversed.maskedPrompt).toBe("]deksam[");
    const encoded = await rendered("{% $base64encode($string($steps.contact)) %}");
    expect(Buffer.from(encoded.maskedPrompt, "base64").toString()).toBe(
      JSON.stringify({ name: "Ann", email: "[masked]", ssn: "[masked]", note: "call [masked]" }),
    );
    // A field named for a kind of personal data is masked whatever its value looks like.
    const looked = await rendered("{% $lookup($steps.contact, 's' & 'sn') %}");
    expect(looked).toMatchObject({ prompt: "123-45-6789", maskedPrompt: "[masked]" });
    // An expression that needs the raw value cannot render from masked data: the prompt is masked.
    const numeric = await rendered("{% $number($substring($steps.contact.ssn, 0, 3)) + 1 %}");
    expect(numeric.prompt).toBe("124");
    expect(numeric.maskedPrompt).toMatch(/^\[masked\] \(the prompt could not be rendered from masked data: /);
    // A field and a pattern the active policy masks beyond the built-in kinds are masked in the
    // data too, so a re-encoding of them reveals nothing either.
    const policyMasks = { maskFields: ["name"], maskPii: [], maskPatterns: ["call"] };
    const custom = await rendered(
      "n={% $join($reverse($split($steps.contact.name, '')), '') %}/{% $uppercase($steps.contact.note) %}",
      policyMasks,
    );
    expect(custom).toMatchObject({
      prompt: "n=nnA/CALL +1 415 555 0100",
      maskedPrompt: "n=]deksam[/[MASKED] [MASKED]",
    });
    // A prompt without expressions is the same for everyone.
    expect(await rendered("Approve the refund?")).toMatchObject({
      prompt: "Approve the refund?",
      maskedPrompt: "Approve the refund?",
    });
  });

  it("run loop - an output over the result limit fails the run's output, not the process", async () => {
    const big = "x".repeat(200);
    expect(await buildOutput(workflow, scope({ contact: { name: big } }), 100)).toMatchObject({
      type: "OUTPUT.FAILED",
      error: { code: ErrorCode.LIMIT_EXCEEDED },
    });
    expect(await buildOutput(workflow, scope({ contact: { name: "Ann" } }), 100)).toEqual({
      type: "OUTPUT.READY",
      output: "Ann",
    });
  });
});

describe("run loop - transitions to run events", () => {
  it("run loop - a step's start, an approval asked and answered, and the end each make their event", () => {
    const [contact] = workflow.steps;
    if (contact === undefined || !("call" in contact)) throw new Error("no call step");
    expect(stepStarted(contact, 3, 2)).toEqual({
      state: TaskState.WORKING,
      text: "step contact: calling crm.get_contact (attempt 2)",
      dedupeKey: "step:contact:3",
      metadata: { stepId: "contact", attempt: 2, call: "crm.get_contact" },
    });
    expect(
      announcementOf(
        { type: "APPROVAL.REQUESTED", stepId: "approve", prompt: "Escalate?", maskedPrompt: "Escalate?" },
        workflow,
        record(),
      ),
    ).toMatchObject({ state: TaskState.INPUT_REQUIRED, metadata: { roles: ["manager"] } });
    // A rejection that ends the run is told by the final event alone.
    const answered = { type: "APPROVAL.ANSWERED", stepId: "approve", approved: false, by: "bob" } as const;
    expect(announcementOf(answered, workflow, record({ state: TaskState.REJECTED }))).toBeUndefined();
    expect(
      announcementOf({ type: "STEP.SUCCEEDED", stepId: "contact", result: {} }, workflow, record()),
    ).toBeUndefined();
    expect(runEnded(FinalState.COMPLETED, record({ output: { name: "Ann" } })).artifact?.parts).toEqual([
      { data: { name: "Ann" }, mediaType: "application/json" },
    ]);
    expect(runEnded(FinalState.FAILED, record({ state: TaskState.FAILED })).status).toMatchObject({
      state: TaskState.FAILED,
      dedupeKey: "final",
      metadata: { error: { code: ErrorCode.INTERNAL } },
    });
  });
});
