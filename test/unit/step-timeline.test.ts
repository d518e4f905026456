import { describe, expect, it } from "vitest";
import { createActor } from "xstate";
import { TaskState } from "../../schemas/a2a.ts";
import { ErrorCode } from "../../schemas/errors.ts";
import type { RunRecord, StepTimes } from "../../schemas/run.ts";
import type { Workflow } from "../../schemas/workflow.ts";
import { LoomError } from "../../services/kit/index.ts";
import { pendingEffects, taskStateOf } from "../../services/orchestrator/demands.ts";
import { planRerun } from "../../services/orchestrator/rerun-plan.ts";
import { compileWorkflow, type RunMachineEvent } from "../../services/orchestrator/run-machine.ts";
import {
  activeStepIds,
  advanceTimeline,
  stepTimeline,
  waitingInputs,
} from "../../services/orchestrator/step-timeline.ts";
import { parseWorkflow } from "../../services/orchestrator/workflow-catalog.ts";

/**
 * A run's timeline and its rerun plan are read from its record alone: the machine is driven here
 * as the orchestrator drives it, the timeline advanced after every event as the driver stores it.
 */
const wf: Workflow = parseWorkflow(
  {
    id: "timeline",
    steps: [
      { id: "contact", call: "crm.get_contact", with: { id: "c-1" }, retry: { max: 3, backoff: "10ms" } },
      {
        id: "lookups",
        parallel: [
          { id: "orders", call: "erp.list_orders", with: {} },
          { id: "profile", read: "mcp://crm/contacts/c-1" },
        ],
      },
      { id: "route", choice: [{ when: "{% true %}", goto: "approve" }] },
      { id: "approve", approval: { prompt: "Escalate?", roles: ["manager"] } },
      { id: "summarize", prompt: "crm.summarize", with: {} },
    ],
  },
  "test workflow",
);

/** Drives a run through `events`, one second apart, and returns its record as the store holds it. */
function runThrough(events: RunMachineEvent[], end?: TaskState): RunRecord {
  const actor = createActor(compileWorkflow(wf), { input: { input: {} } }).start();
  let clock = Date.parse("2026-12-06T01:00:00.000Z");
  const at = () => new Date(clock).toISOString();
  let active = activeStepIds(actor.getSnapshot());
  let timeline: Record<string, StepTimes> = advanceTimeline({}, new Set(), active, at());
  for (const event of events) {
    clock += 1_000;
    actor.send(event);
    const after = activeStepIds(actor.getSnapshot());
    timeline = advanceTimeline(timeline, active, after, at());
    active = after;
  }
  const snapshot = actor.getSnapshot();
  return {
    runId: "r-1",
    contextId: "ctx-1",
    workflowId: wf.id,
    workflowVersion: wf.version,
    definition: wf,
    input: {},
    state: end ?? taskStateOf(wf, snapshot),
    snapshot: JSON.parse(JSON.stringify(actor.getPersistedSnapshot())),
    pending: [],
    timeline,
    ...(snapshot.context.error === undefined ? {} : { error: snapshot.context.error }),
    createdAt: "2026-12-06T01:00:00.000Z",
    updatedAt: at(),
  };
}

const ok = (stepId: string, result: unknown): RunMachineEvent => ({ type: "STEP.SUCCEEDED", stepId, result });
const fail = (stepId: string, code: ErrorCode): RunMachineEvent => ({
  type: "STEP.FAILED",
  stepId,
  error: { code, message: `${code} in ${stepId}` },
});
const TO_APPROVAL: RunMachineEvent[] = [
  fail("contact", ErrorCode.TOOL_TIMEOUT),
  ok("contact", { name: "Ada" }),
  ok("orders", { items: [] }),
  ok("profile", { text: "Ada" }),
  { type: "CHOICE.DECIDED", stepId: "route", target: "approve" },
  {
    type: "APPROVAL.REQUESTED",
    stepId: "approve",
    prompt: "Escalate Ada?",
    maskedPrompt: "Escalate [masked]?",
  },
];

const byId = (record: RunRecord) =>
  Object.fromEntries(stepTimeline(record).map((view) => [view.stepId, view]));

function refusal(work: () => unknown): LoomError {
  try {
    work();
  } catch (error) {
    if (error instanceof LoomError) return error;
    throw error;
  }
  throw new Error("expected a LoomError");
}

describe("step timeline", () => {
  it("timeline - each step's state, attempts and duration, in the workflow's order, branches after their step", () => {
    const steps = stepTimeline(runThrough(TO_APPROVAL));
    expect(steps.map((view) => [view.stepId, view.parent, view.state])).toEqual([
      ["contact", undefined, "completed"],
      ["lookups", undefined, "completed"],
      ["orders", "lookups", "completed"],
      ["profile", "lookups", "completed"],
      ["route", undefined, "completed"],
      ["approve", undefined, "waiting"],
      ["summarize", undefined, "pending"],
    ]);
    const view = Object.fromEntries(steps.map((step) => [step.stepId, step]));
    // A retry keeps the step's start: two attempts, two seconds.
    expect(view.contact).toMatchObject({
      kind: "call",
      target: "crm.get_contact",
      attempts: 2,
      durationMs: 2_000,
    });
    expect(view.lookups).toMatchObject({ kind: "parallel", durationMs: 2_000 });
    expect(view.profile).toMatchObject({ kind: "read", target: "mcp://crm/contacts/c-1", attempts: 1 });
    expect(view.approve?.startedAt).toBe("2026-12-06T01:00:05.000Z");
    expect(view.approve?.endedAt).toBeUndefined();
  });

  it("timeline - a failed step carries its error; the steps after it were skipped", () => {
    const record = runThrough([fail("contact", ErrorCode.TOOL_ERROR)]);
    expect(record.state).toBe(TaskState.FAILED);
    const view = byId(record);
    expect(view.contact).toMatchObject({ state: "failed", attempts: 1, error: { code: "TOOL_ERROR" } });
    expect(view.lookups?.state).toBe("skipped");
    expect(view.summarize?.state).toBe("skipped");
  });

  it("timeline - steps under way when the run is canceled are canceled, and end then", () => {
    const record = runThrough(
      [ok("contact", { name: "Ada" }), ok("orders", {}), { type: "RUN.CANCEL", by: "ann" }],
      TaskState.CANCELED,
    );
    const view = byId(record);
    expect(view.orders?.state).toBe("completed");
    expect(view.profile).toMatchObject({ state: "canceled", endedAt: "2026-12-06T01:00:03.000Z" });
    expect(view.lookups?.state).toBe("canceled");
  });

  it("timeline - a run refused before it had a workflow has no steps", () => {
    const { definition: _definition, ...refused } = runThrough([]);
    expect(stepTimeline({ ...refused, snapshot: null, state: TaskState.REJECTED })).toEqual([]);
  });

  it("waiting - an approval says its prompt and roles; a run that does not wait asks nothing", () => {
    expect(waitingInputs(runThrough(TO_APPROVAL))).toEqual([
      {
        stepId: "approve",
        kind: "approval",
        prompt: "Escalate Ada?",
        maskedPrompt: "Escalate [masked]?",
        roles: ["manager"],
        callerMayAnswer: false,
      },
    ]);
    expect(waitingInputs(runThrough(TO_APPROVAL.slice(0, 2)))).toEqual([]);
  });

  it("waiting - an approval asked before prompts were rendered twice shows no prompt to a masked reader", () => {
    const record = runThrough(TO_APPROVAL);
    const snapshot = record.snapshot as { context: Record<string, unknown> };
    const { maskedApprovals: _masked, ...context } = snapshot.context;
    const [asked] = waitingInputs({ ...record, snapshot: { ...snapshot, context } });
    expect(asked).toMatchObject({ prompt: "Escalate Ada?", maskedPrompt: "[masked]" });
  });

  it("waiting - an MCP server's question says its server, message and answer schema; the step is waiting", () => {
    const requestedSchema = {
      type: "object" as const,
      properties: { name: { type: "string" as const } },
      required: ["name"],
    };
    const record = runThrough([
      {
        type: "STEP.ELICIT",
        stepId: "contact",
        elicitation: {
          server: "crm",
          message: "Which Ada?",
          requestedSchema,
          attempt: 1,
          reply: "_INBOX.w.1",
        },
      },
    ]);
    expect(record.state).toBe(TaskState.INPUT_REQUIRED);
    expect(waitingInputs(record)).toEqual([
      {
        stepId: "contact",
        kind: "elicitation",
        prompt: "Which Ada?",
        maskedPrompt: "Which Ada?",
        server: "crm",
        requestedSchema,
        roles: [],
        callerMayAnswer: false,
      },
    ]);
    expect(byId(record).contact?.state).toBe("waiting");
  });
});

describe("rerun plan", () => {
  const NOW = "2026-12-06T02:00:00.000Z";
  const failedAtSummary = () =>
    runThrough([
      ...TO_APPROVAL,
      { type: "APPROVAL.ANSWERED", stepId: "approve", approved: true, by: "max" },
      fail("summarize", ErrorCode.TOOL_ERROR),
    ]);

  it("rerun - by default starts where the run stopped, reusing every recorded result before it", () => {
    const plan = planRerun(failedAtSummary(), undefined, NOW);
    expect(plan.rerunOf).toEqual({
      runId: "r-1",
      from: "summarize",
      reused: ["contact", "lookups", "orders", "profile", "approve"],
    });
    expect(plan.pending).toEqual(["summarize#1"]);
    expect(plan.timeline).toEqual({ summarize: { startedAt: NOW } });
    const actor = createActor(compileWorkflow(wf), {
      snapshot: plan.snapshot as never,
      input: { input: {} },
    });
    const { context } = actor.getSnapshot();
    expect(context.steps).toMatchObject({ contact: { name: "Ada" }, approve: { approved: true, by: "max" } });
    expect(context.attempts).toEqual({ summarize: 1 });
  });

  it("rerun - from an earlier step runs it and every later step again, keeping only what came before", () => {
    const plan = planRerun(failedAtSummary(), "lookups", NOW);
    expect(plan.rerunOf.reused).toEqual(["contact"]);
    expect(plan.pending.sort()).toEqual(["orders#1", "profile#1"]);
    const record = {
      ...runThrough([]),
      snapshot: plan.snapshot,
      timeline: plan.timeline,
      rerunOf: plan.rerunOf,
    };
    expect(
      pendingEffects(
        wf,
        createActor(compileWorkflow(wf), {
          snapshot: plan.snapshot as never,
          input: { input: {} },
        }).getSnapshot(),
      ).length,
    ).toBe(2);
    const view = byId(record);
    expect(view.contact).toMatchObject({ state: "completed", reusedFrom: "r-1" });
    expect(view.orders).toMatchObject({ state: "running", startedAt: NOW });
  });

  it("rerun - a forgiven failure before --from is reused with what compensated it", () => {
    const compensated = parseWorkflow(
      {
        id: "compensated",
        steps: [
          {
            id: "charge",
            call: "erp.charge",
            with: {},
            // biome-ignore lint/suspicious/noThenProperty: `then` is the workflow DSL's word; this is plain data, never awaited.
            onError: { steps: [{ id: "refund", call: "erp.refund", with: {} }], then: "continue" },
          },
          { id: "notify", call: "crm.notify", with: { refunded: "{% $steps.refund.ok %}" } },
        ],
      },
      "test workflow",
    );
    const actor = createActor(compileWorkflow(compensated), { input: { input: {} } }).start();
    actor.send(fail("charge", ErrorCode.TOOL_ERROR));
    actor.send(ok("refund", { ok: true }));
    actor.send(fail("notify", ErrorCode.TOOL_ERROR));
    const record: RunRecord = {
      ...runThrough([]),
      definition: compensated,
      workflowId: compensated.id,
      state: TaskState.FAILED,
      snapshot: actor.getPersistedSnapshot(),
      timeline: {},
    };
    const plan = planRerun(record, undefined, NOW);
    expect(plan.rerunOf).toEqual({ runId: "r-1", from: "notify", reused: ["charge", "refund"] });
    const { context } = createActor(compileWorkflow(compensated), {
      snapshot: plan.snapshot as never,
      input: { input: {} },
    }).getSnapshot();
    expect(context.steps).toEqual({
      charge: { error: expect.objectContaining({ code: "TOOL_ERROR" }) },
      refund: { ok: true },
    });
    expect(plan.pending).toEqual(["notify#1"]);
  });

  it("rerun - an unknown step is STEP_NOT_FOUND with a did-you-mean and the steps there are", () => {
    const error = refusal(() => planRerun(failedAtSummary(), "sumarize", NOW));
    expect(error.code).toBe(ErrorCode.STEP_NOT_FOUND);
    expect(error.message).toContain('did you mean "summarize"?');
    expect(error.message).toContain("contact, lookups, route, approve, summarize");
  });

  it("rerun - a branch of a parallel step names the step to rerun from instead", () => {
    const error = refusal(() => planRerun(failedAtSummary(), "orders", NOW));
    expect(error.code).toBe(ErrorCode.INVALID_INPUT);
    expect(error.message).toContain("rerun from lookups");
  });

  it("rerun - a step after where the run stopped has no results to start from", () => {
    const record = runThrough([fail("contact", ErrorCode.TOOL_ERROR)]);
    const error = refusal(() => planRerun(record, "approve", NOW));
    expect(error.code).toBe(ErrorCode.INVALID_INPUT);
    expect(error.message).toContain("stopped at step contact");
    // Control: from where it stopped.
    expect(planRerun(record, "contact", NOW).rerunOf).toEqual({ runId: "r-1", from: "contact", reused: [] });
  });

  it("rerun - a run still going or completed is RUN_NOT_RERUNNABLE, saying what can be rerun", () => {
    const going = refusal(() => planRerun(runThrough(TO_APPROVAL), undefined, NOW));
    expect(going.code).toBe(ErrorCode.RUN_NOT_RERUNNABLE);
    expect(going.message).toContain("only a failed or canceled run can be rerun");
    expect(going.message).toContain("loom runs cancel r-1");
    const completed = refusal(() =>
      planRerun({ ...failedAtSummary(), state: TaskState.COMPLETED }, undefined, NOW),
    );
    expect(completed.code).toBe(ErrorCode.RUN_NOT_RERUNNABLE);
    expect(completed.message).toContain("it completed");
  });
});
