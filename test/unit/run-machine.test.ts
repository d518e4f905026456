import { describe, expect, it } from "vitest";
import { createActor } from "xstate";
import { TaskState } from "../../schemas/a2a.ts";
import { type ErrorCode, RETRYABLE_CODES, type WireError } from "../../schemas/errors.ts";
import type { Workflow } from "../../schemas/workflow.ts";
import { LoomError } from "../../services/kit/index.ts";
import {
  awaitedApprovals,
  type Effect,
  pendingEffects,
  retryDelayMs,
  taskStateOf,
} from "../../services/orchestrator/demands.ts";
import { compileWorkflow, NEXT_STEP, type RunMachineEvent } from "../../services/orchestrator/run-machine.ts";
import { parseWorkflow } from "../../services/orchestrator/workflow-catalog.ts";

/**
 * The compiled machine is driven here exactly as the orchestrator drives it: read the effects its
 * states ask for, send the outcomes as events. No bus, no KV, no MCP.
 */
function workflow(raw: Record<string, unknown>): Workflow {
  return parseWorkflow({ id: "test", ...raw }, "test workflow");
}

const INPUT = { contactId: "c-1" };

type RunActor = ReturnType<typeof start>;

function start(wf: Workflow, input: Record<string, unknown> = INPUT) {
  return createActor(compileWorkflow(wf), { input: { input } }).start();
}

/** A new actor from the run's persisted snapshot, as a restarted orchestrator makes it. */
function restore(wf: Workflow, actor: RunActor, input: Record<string, unknown> = INPUT): RunActor {
  const persisted = JSON.parse(JSON.stringify(actor.getPersistedSnapshot()));
  return createActor(compileWorkflow(wf), { snapshot: persisted, input: { input } }).start();
}

const keys = (wf: Workflow, actor: RunActor) =>
  pendingEffects(wf, actor.getSnapshot()).map((effect) => effect.key);
const stateOf = (wf: Workflow, actor: RunActor) => taskStateOf(wf, actor.getSnapshot());

const ok = (stepId: string, result: unknown): RunMachineEvent => ({ type: "STEP.SUCCEEDED", stepId, result });
const failed = (stepId: string, code: ErrorCode, message = `${code} in ${stepId}`): RunMachineEvent => ({
  type: "STEP.FAILED",
  stepId,
  error: { code, message },
});
const output = (value: unknown): RunMachineEvent => ({ type: "OUTPUT.READY", output: value });

const call = (id: string, extra: Record<string, unknown> = {}) => ({
  id,
  call: "crm.get_contact",
  with: { id: "{% $input.contactId %}" },
  ...extra,
});

/** `onError` as a definition writes it: its `then` is the DSL's word, not a promise's. */
const onError = (then: "fail" | "continue", steps: unknown[] = []) => ({ steps, then });

describe("workflow - work steps", () => {
  const wf = workflow({ steps: [call("contact"), call("orders", { call: "erp.list_orders" })] });

  it("workflow - a new run asks for its first step, attempt 1", () => {
    const actor = start(wf);
    const effects = pendingEffects(wf, actor.getSnapshot());
    expect(effects).toHaveLength(1);
    expect(effects[0]).toMatchObject({ kind: "work", key: "contact#1", attempt: 1, visit: 1 });
    expect((effects[0] as Extract<Effect, { kind: "work" }>).step.id).toBe("contact");
    expect(stateOf(wf, actor)).toBe(TaskState.WORKING);
    expect(actor.getSnapshot().context.input).toEqual(INPUT);
  });

  it("workflow - a call's result is recorded and the next step starts", () => {
    const actor = start(wf);
    actor.send(ok("contact", { name: "Ada" }));
    expect(keys(wf, actor)).toEqual(["orders#1"]);
    expect(actor.getSnapshot().context.steps).toEqual({ contact: { name: "Ada" } });
    actor.send(ok("orders", { items: [] }));
    expect(keys(wf, actor)).toEqual(["output"]);
    actor.send(output({ done: true }));
    const snapshot = actor.getSnapshot();
    expect(snapshot.status).toBe("done");
    expect(snapshot.value).toBe("completed");
    expect(snapshot.context.output).toEqual({ done: true });
    expect(pendingEffects(wf, snapshot)).toEqual([]);
    expect(stateOf(wf, actor)).toBe(TaskState.COMPLETED);
  });

  it("workflow - a result lands under the step's `as` name", () => {
    const named = workflow({ steps: [call("contact", { as: "person" })] });
    const actor = start(named);
    actor.send(ok("contact", { name: "Ada" }));
    expect(actor.getSnapshot().context.steps).toEqual({ person: { name: "Ada" } });
  });

  it("workflow - an outcome for another step or a stale event changes nothing", () => {
    const actor = start(wf);
    const before = JSON.stringify(actor.getPersistedSnapshot());
    actor.send(ok("orders", { items: [] }));
    actor.send(failed("orders", "TOOL_ERROR"));
    actor.send({ type: "CHOICE.DECIDED", stepId: "contact", target: "orders" });
    actor.send({ type: "APPROVAL.ANSWERED", stepId: "contact", approved: true, by: "x" });
    actor.send(output("too early"));
    expect(JSON.stringify(actor.getPersistedSnapshot())).toBe(before);
    expect(keys(wf, actor)).toEqual(["contact#1"]);
  });

  it("workflow - OUTPUT.FAILED ends the run failed with the expression's error", () => {
    const actor = start(wf);
    actor.send(ok("contact", {}));
    actor.send(ok("orders", {}));
    actor.send({ type: "OUTPUT.FAILED", error: { code: "EXPRESSION_FAILED", message: "output: bad" } });
    expect(actor.getSnapshot().value).toBe("failed");
    expect(actor.getSnapshot().context.error?.code).toBe("EXPRESSION_FAILED");
    expect(stateOf(wf, actor)).toBe(TaskState.FAILED);
  });
});

describe("workflow - retries", () => {
  const wf = workflow({ steps: [call("contact", { retry: { max: 3, backoff: "100ms" } })] });

  it("workflow - a retryable failure is tried again with a new attempt number, up to retry.max", () => {
    const actor = start(wf);
    expect(keys(wf, actor)).toEqual(["contact#1"]);
    actor.send(failed("contact", "TOOL_TIMEOUT"));
    expect(keys(wf, actor)).toEqual(["contact#2"]);
    expect(actor.getSnapshot().context.tries.contact).toBe(2);
    actor.send(failed("contact", "SERVER_UNAVAILABLE"));
    expect(keys(wf, actor)).toEqual(["contact#3"]);
    expect(actor.getSnapshot().context.error).toBeUndefined();
    actor.send(failed("contact", "TIMEOUT", "third time"));
    const snapshot = actor.getSnapshot();
    expect(snapshot.value).toBe("failed");
    expect(snapshot.context.error).toEqual({ code: "TIMEOUT", message: "third time" });
    expect(snapshot.context.steps.contact).toEqual({ error: { code: "TIMEOUT", message: "third time" } });
  });

  it("workflow - a retried step that then succeeds moves on", () => {
    const actor = start(wf);
    actor.send(failed("contact", "AGENT_UNAVAILABLE"));
    actor.send(ok("contact", { name: "Ada" }));
    expect(keys(wf, actor)).toEqual(["output"]);
    expect(actor.getSnapshot().context.error).toBeUndefined();
  });

  it("workflow - a failure of an earlier attempt arriving late does not count twice", () => {
    const actor = start(wf);
    actor.send(failed("contact", "TOOL_TIMEOUT"));
    expect(keys(wf, actor)).toEqual(["contact#2"]);
    // The machine cannot tell attempts apart by event; the driver only feeds outcomes of the
    // effect it launched. Here: a success of attempt 2 moves on.
    actor.send(ok("contact", { name: "Ada" }));
    expect(actor.getSnapshot().context.steps.contact).toEqual({ name: "Ada" });
  });

  it.each(["TOOL_ERROR", "INVALID_INPUT", "EXPRESSION_FAILED", "GRANT_REFUSED"] as const)(
    "workflow - a non-retryable %s fails the step at once",
    (code) => {
      expect(RETRYABLE_CODES.has(code)).toBe(false);
      const actor = start(wf);
      actor.send(failed("contact", code));
      expect(actor.getSnapshot().value).toBe("failed");
      expect(actor.getSnapshot().context.error?.code).toBe(code);
      expect(actor.getSnapshot().context.tries.contact).toBe(1);
    },
  );

  it("workflow - retry.on names exactly the codes that are retried", () => {
    const custom = workflow({ steps: [call("contact", { retry: { max: 5, on: ["TOOL_ERROR"] } })] });
    const actor = start(custom);
    actor.send(failed("contact", "TOOL_ERROR"));
    actor.send(failed("contact", "TOOL_ERROR"));
    expect(keys(custom, actor)).toEqual(["contact#3"]);
    // A transient code is not retried when retry.on does not name it.
    actor.send(failed("contact", "TOOL_TIMEOUT"));
    expect(actor.getSnapshot().value).toBe("failed");
    expect(actor.getSnapshot().context.error?.code).toBe("TOOL_TIMEOUT");
  });

  it("workflow - without retry a step gets one attempt, even for a transient error", () => {
    const once = workflow({ steps: [call("contact")] });
    const actor = start(once);
    actor.send(failed("contact", "TOOL_TIMEOUT"));
    expect(actor.getSnapshot().value).toBe("failed");
  });

  it("workflow - POLICY_DENIED ends the run rejected, never retried", () => {
    const denied = workflow({
      steps: [call("contact", { retry: { max: 5, on: ["POLICY_DENIED", "TOOL_ERROR"] } })],
    });
    const actor = start(denied);
    actor.send(failed("contact", "POLICY_DENIED", "policy denied crm.get_contact"));
    // retry.on wins over the denial only if it names POLICY_DENIED: it does here, so one more try.
    expect(keys(denied, actor)).toEqual(["contact#2"]);
    const plain = start(wf);
    plain.send(failed("contact", "POLICY_DENIED", "policy denied crm.get_contact"));
    expect(plain.getSnapshot().value).toBe("rejected");
    expect(plain.getSnapshot().context.error?.code).toBe("POLICY_DENIED");
    expect(stateOf(wf, plain)).toBe(TaskState.REJECTED);
  });

  it("workflow - a denied step with onError is rejected, not compensated", () => {
    const compensated = workflow({
      steps: [call("contact", { onError: onError("continue", [call("undo")]) })],
    });
    const actor = start(compensated);
    actor.send(failed("contact", "POLICY_DENIED"));
    expect(actor.getSnapshot().value).toBe("rejected");
    expect(keys(compensated, actor)).toEqual([]);
  });

  it("workflow - a step's timeout travels with its effect, and running out of it is retried", () => {
    const timed = workflow({ steps: [call("contact", { timeout: "2s", retry: { max: 2 } })] });
    const actor = start(timed);
    const [effect] = pendingEffects(timed, actor.getSnapshot());
    expect(effect?.kind === "work" && effect.step.timeout).toBe(2_000);
    actor.send(failed("contact", "TOOL_TIMEOUT"));
    expect(keys(timed, actor)).toEqual(["contact#2"]);
    actor.send(failed("contact", "TOOL_TIMEOUT"));
    expect(actor.getSnapshot().context.error?.code).toBe("TOOL_TIMEOUT");
  });

  it("workflow - the backoff doubles per attempt with at most 20% jitter", () => {
    const step = wf.steps[0] as Parameters<typeof retryDelayMs>[0];
    expect(retryDelayMs(step, 2, () => 0.5)).toBe(100);
    expect(retryDelayMs(step, 3, () => 0.5)).toBe(200);
    expect(retryDelayMs(step, 4, () => 0)).toBe(320);
    expect(retryDelayMs(step, 4, () => 1)).toBe(480);
  });
});

describe("workflow - parallel", () => {
  const wf = workflow({
    steps: [
      {
        id: "lookups",
        parallel: [
          call("orders", { call: "erp.list_orders", retry: { max: 2 } }),
          { id: "profile", read: "mcp://crm/contacts/{% $input.contactId %}", as: "card" },
          { id: "summary", prompt: "crm.summarize", with: { text: "x" } },
        ],
      },
      call("after"),
    ],
  });

  it("workflow - a parallel step asks for every branch at once", () => {
    const actor = start(wf);
    expect(keys(wf, actor).sort()).toEqual(["orders#1", "profile#1", "summary#1"]);
    expect(stateOf(wf, actor)).toBe(TaskState.WORKING);
  });

  it("workflow - a parallel step waits for every branch and collects results under its name", () => {
    const actor = start(wf);
    actor.send(ok("profile", { name: "Ada" }));
    expect(keys(wf, actor).sort()).toEqual(["orders#1", "summary#1"]);
    actor.send(failed("orders", "TOOL_TIMEOUT"));
    expect(keys(wf, actor).sort()).toEqual(["orders#2", "summary#1"]);
    actor.send(ok("summary", "text"));
    expect(keys(wf, actor)).toEqual(["orders#2"]);
    actor.send(ok("orders", { items: [1] }));
    expect(keys(wf, actor)).toEqual(["after#1"]);
    expect(actor.getSnapshot().context.steps.lookups).toEqual({
      orders: { items: [1] },
      card: { name: "Ada" },
      summary: "text",
    });
  });

  it("workflow - one failed branch fails the step and the run", () => {
    const actor = start(wf);
    actor.send(ok("profile", {}));
    actor.send(failed("summary", "TOOL_ERROR", "no such prompt"));
    expect(actor.getSnapshot().value).toBe("failed");
    expect(actor.getSnapshot().context.error?.message).toBe("no such prompt");
    expect(keys(wf, actor)).toEqual([]);
    // The abandoned branch's late result changes nothing.
    const before = JSON.stringify(actor.getPersistedSnapshot());
    actor.send(ok("orders", { items: [] }));
    expect(JSON.stringify(actor.getPersistedSnapshot())).toBe(before);
  });

  it("workflow - a failed branch sends a parallel step to its onError, abandoning the others", () => {
    const caught = workflow({
      steps: [
        {
          id: "lookups",
          parallel: [call("orders"), call("profile")],
          onError: onError("continue", [call("notify")]),
        },
        call("after"),
      ],
    });
    const actor = start(caught);
    actor.send(failed("orders", "TOOL_ERROR", "erp down"));
    expect(keys(caught, actor)).toEqual(["notify#1"]);
    actor.send(ok("profile", { late: true }));
    expect(keys(caught, actor)).toEqual(["notify#1"]);
    expect(actor.getSnapshot().context.steps.profile).toBeUndefined();
    actor.send(ok("notify", "sent"));
    expect(keys(caught, actor)).toEqual(["after#1"]);
    const { context } = actor.getSnapshot();
    expect(context.error).toBeUndefined();
    expect(context.steps.orders).toEqual({ error: { code: "TOOL_ERROR", message: "erp down" } });
    expect(context.steps.notify).toBe("sent");
  });

  it("workflow - a parallel step restored mid-way resumes with only the unfinished branches", () => {
    const actor = start(wf);
    actor.send(ok("profile", { name: "Ada" }));
    const restored = restore(wf, actor);
    expect(keys(wf, restored).sort()).toEqual(["orders#1", "summary#1"]);
    restored.send(ok("orders", {}));
    restored.send(ok("summary", "s"));
    expect(keys(wf, restored)).toEqual(["after#1"]);
    expect(restored.getSnapshot().context.steps.lookups).toMatchObject({ card: { name: "Ada" } });
  });
});

describe("workflow - choice", () => {
  const wf = workflow({
    steps: [
      call("contact"),
      {
        id: "route",
        choice: [
          { when: "{% $steps.contact.region = 'us' %}", goto: "approve" },
          { when: "{% $steps.contact.vip %}", goto: "vip" },
        ],
        default: "summarize",
      },
      call("vip"),
      call("approve"),
      call("summarize"),
    ],
  });

  it("workflow - a choice asks to be decided, then goes where the decision says", () => {
    const actor = start(wf);
    actor.send(ok("contact", { region: "us" }));
    const effects = pendingEffects(wf, actor.getSnapshot());
    expect(effects).toMatchObject([{ kind: "choice", key: "choice:route" }]);
    actor.send({ type: "CHOICE.DECIDED", stepId: "route", target: "approve" });
    expect(keys(wf, actor)).toEqual(["approve#1"]);
  });

  it.each([
    ["vip", "vip#1"],
    ["summarize", "summarize#1"],
  ])("workflow - a choice decided for %s goes there", (target, key) => {
    const actor = start(wf);
    actor.send(ok("contact", {}));
    actor.send({ type: "CHOICE.DECIDED", stepId: "route", target });
    expect(keys(wf, actor)).toEqual([key]);
  });

  it("workflow - a choice ignores a target it does not name", () => {
    const actor = start(wf);
    actor.send(ok("contact", {}));
    actor.send({ type: "CHOICE.DECIDED", stepId: "route", target: "contact" });
    expect(keys(wf, actor)).toEqual(["choice:route"]);
  });

  it("workflow - a choice whose condition cannot be evaluated fails the run", () => {
    const actor = start(wf);
    actor.send(ok("contact", {}));
    actor.send(failed("route", "EXPRESSION_FAILED", "step route: when: bad"));
    expect(actor.getSnapshot().value).toBe("failed");
    expect(actor.getSnapshot().context.error).toEqual({
      code: "EXPRESSION_FAILED",
      message: "step route: when: bad",
    });
    expect(keys(wf, actor)).toEqual([]);
  });

  it("workflow - a choice without default goes to the next step on (next)", () => {
    const noDefault = workflow({
      steps: [
        { id: "route", choice: [{ when: "{% $input.skip %}", goto: "last" }] },
        call("middle"),
        call("last"),
      ],
    });
    const actor = start(noDefault);
    actor.send({ type: "CHOICE.DECIDED", stepId: "route", target: NEXT_STEP });
    expect(keys(noDefault, actor)).toEqual(["middle#1"]);
  });

  it("workflow - a choice that loops back makes the step new work, with a new key", () => {
    const loop = workflow({
      steps: [
        call("poll", { retry: { max: 2 } }),
        { id: "again", choice: [{ when: "{% $steps.poll.pending %}", goto: "poll" }] },
      ],
    });
    const actor = start(loop);
    actor.send(failed("poll", "TIMEOUT"));
    expect(keys(loop, actor)).toEqual(["poll#2"]);
    actor.send(ok("poll", { pending: true }));
    actor.send({ type: "CHOICE.DECIDED", stepId: "again", target: "poll" });
    const effects = pendingEffects(loop, actor.getSnapshot());
    expect(effects).toMatchObject([{ kind: "work", key: "poll#3", attempt: 3, visit: 2 }]);
    // The retry budget is per visit: this visit may retry again.
    actor.send(failed("poll", "TIMEOUT"));
    expect(keys(loop, actor)).toEqual(["poll#4"]);
    actor.send(ok("poll", { pending: false }));
    actor.send({ type: "CHOICE.DECIDED", stepId: "again", target: NEXT_STEP });
    expect(keys(loop, actor)).toEqual(["output"]);
  });
});

describe("workflow - approval", () => {
  const approval = (onReject?: unknown) => ({
    id: "approve",
    as: "decision",
    approval: {
      prompt: "Escalate {% $steps.contact.name %}?",
      roles: ["manager"],
      ...(onReject === undefined ? {} : { onReject }),
    },
  });
  const build = (onReject?: unknown) =>
    workflow({ steps: [call("contact"), approval(onReject), call("summarize"), call("fallback")] });

  function waiting(wf: Workflow): RunActor {
    const actor = start(wf);
    actor.send(ok("contact", { name: "Grace" }));
    expect(pendingEffects(wf, actor.getSnapshot())).toMatchObject([
      { kind: "approval-request", key: "approval:approve" },
    ]);
    expect(stateOf(wf, actor)).toBe(TaskState.WORKING);
    actor.send({
      type: "APPROVAL.REQUESTED",
      stepId: "approve",
      prompt: "Escalate Grace?",
      maskedPrompt: "Escalate [masked]?",
    });
    return actor;
  }

  it("workflow - an approval puts the run in input-required with nothing to do", () => {
    const wf = build();
    const actor = waiting(wf);
    expect(keys(wf, actor)).toEqual([]);
    expect(awaitedApprovals(actor.getSnapshot())).toEqual(["approve"]);
    expect(stateOf(wf, actor)).toBe(TaskState.INPUT_REQUIRED);
    expect(actor.getSnapshot().context.approvals).toEqual({ approve: "Escalate Grace?" });
    expect(actor.getSnapshot().context.maskedApprovals).toEqual({ approve: "Escalate [masked]?" });
  });

  it("workflow - an approved approval records the answer and moves on", () => {
    const wf = build();
    const actor = waiting(wf);
    actor.send({ type: "APPROVAL.ANSWERED", stepId: "approve", approved: true, by: "mia", comment: "ok" });
    expect(keys(wf, actor)).toEqual(["summarize#1"]);
    const { context } = actor.getSnapshot();
    expect(context.steps.decision).toEqual({ approved: true, by: "mia", comment: "ok" });
    expect(context.approvals).toEqual({});
    expect(context.maskedApprovals).toEqual({});
    expect(stateOf(wf, actor)).toBe(TaskState.WORKING);
  });

  it("workflow - an answer before the request, or for another step, is ignored", () => {
    const wf = build();
    const actor = start(wf);
    actor.send(ok("contact", {}));
    actor.send({ type: "APPROVAL.ANSWERED", stepId: "approve", approved: true, by: "mia" });
    expect(keys(wf, actor)).toEqual(["approval:approve"]);
    actor.send({ type: "APPROVAL.REQUESTED", stepId: "approve", prompt: "p", maskedPrompt: "p" });
    actor.send({ type: "APPROVAL.ANSWERED", stepId: "other", approved: true, by: "mia" });
    expect(stateOf(wf, actor)).toBe(TaskState.INPUT_REQUIRED);
  });

  it("workflow - an approval whose prompt cannot be rendered fails the run instead of waiting", () => {
    const wf = build();
    const actor = start(wf);
    actor.send(ok("contact", {}));
    actor.send(failed("approve", "EXPRESSION_FAILED"));
    expect(actor.getSnapshot().value).toBe("failed");
    expect(stateOf(wf, actor)).toBe(TaskState.FAILED);
  });

  it("workflow - a rejection ends the run rejected by default", () => {
    const wf = build();
    const actor = waiting(wf);
    actor.send({ type: "APPROVAL.ANSWERED", stepId: "approve", approved: false, by: "mia" });
    const snapshot = actor.getSnapshot();
    expect(snapshot.value).toBe("rejected");
    expect(snapshot.context.error).toMatchObject({ code: "APPROVAL_REJECTED" });
    expect(snapshot.context.error?.message).toContain("mia");
    expect(snapshot.context.steps.decision).toEqual({ approved: false, by: "mia" });
    expect(stateOf(wf, actor)).toBe(TaskState.REJECTED);
  });

  it("workflow - onReject: fail ends the run failed", () => {
    const wf = build("fail");
    const actor = waiting(wf);
    actor.send({ type: "APPROVAL.ANSWERED", stepId: "approve", approved: false, by: "mia" });
    expect(actor.getSnapshot().value).toBe("failed");
    expect(actor.getSnapshot().context.error?.code).toBe("APPROVAL_REJECTED");
    expect(stateOf(wf, actor)).toBe(TaskState.FAILED);
  });

  it("workflow - onReject: goto carries on at that step, with the answer in $steps", () => {
    const wf = build({ goto: "fallback" });
    const actor = waiting(wf);
    actor.send({ type: "APPROVAL.ANSWERED", stepId: "approve", approved: false, by: "mia" });
    expect(keys(wf, actor)).toEqual(["fallback#1"]);
    expect(actor.getSnapshot().context.error).toBeUndefined();
    expect(actor.getSnapshot().context.steps.decision).toEqual({ approved: false, by: "mia" });
  });

  it("workflow - a run waiting for approval restores still waiting, and the answer completes it", () => {
    const wf = build();
    const actor = waiting(wf);
    actor.stop();
    const restored = restore(wf, actor);
    expect(stateOf(wf, restored)).toBe(TaskState.INPUT_REQUIRED);
    expect(awaitedApprovals(restored.getSnapshot())).toEqual(["approve"]);
    restored.send({ type: "APPROVAL.ANSWERED", stepId: "approve", approved: true, by: "mia" });
    restored.send(ok("summarize", "s"));
    restored.send(ok("fallback", "f"));
    restored.send(output("done"));
    expect(restored.getSnapshot().value).toBe("completed");
  });
});

describe("workflow - onError", () => {
  const build = (then: "fail" | "continue") =>
    workflow({
      steps: [
        call("debit"),
        call("credit", {
          as: "credited",
          onError: onError(then, [call("refund"), call("notify", { retry: { max: 2 } })]),
        }),
        call("fee"),
      ],
    });
  const original: WireError = { code: "TOOL_ERROR", message: "credit refused" };

  it("workflow - compensation steps run in order, then the run fails with the original error", () => {
    const wf = build("fail");
    const actor = start(wf);
    actor.send(ok("debit", { entry: 1 }));
    actor.send({ type: "STEP.FAILED", stepId: "credit", error: original });
    expect(keys(wf, actor)).toEqual(["refund#1"]);
    expect(stateOf(wf, actor)).toBe(TaskState.WORKING);
    actor.send(ok("refund", { entry: 2 }));
    expect(keys(wf, actor)).toEqual(["notify#1"]);
    actor.send(failed("notify", "TIMEOUT"));
    expect(keys(wf, actor)).toEqual(["notify#2"]);
    actor.send(ok("notify", "sent"));
    const snapshot = actor.getSnapshot();
    expect(snapshot.value).toBe("failed");
    expect(snapshot.context.error).toEqual(original);
    expect(snapshot.context.steps).toMatchObject({ refund: { entry: 2 }, notify: "sent" });
    expect(snapshot.context.steps.fee).toBeUndefined();
  });

  it("workflow - onError then: continue goes on with the failure in $steps under the step's name", () => {
    const wf = build("continue");
    const actor = start(wf);
    actor.send(ok("debit", {}));
    actor.send({ type: "STEP.FAILED", stepId: "credit", error: original });
    actor.send(ok("refund", {}));
    actor.send(ok("notify", {}));
    expect(keys(wf, actor)).toEqual(["fee#1"]);
    const { context } = actor.getSnapshot();
    expect(context.error).toBeUndefined();
    expect(context.steps.credited).toEqual({ error: original });
    actor.send(ok("fee", {}));
    actor.send(output(null));
    expect(actor.getSnapshot().value).toBe("completed");
    expect(stateOf(wf, actor)).toBe(TaskState.COMPLETED);
  });

  it("workflow - a failing compensation step fails the run with its own error", () => {
    const wf = build("continue");
    const actor = start(wf);
    actor.send(ok("debit", {}));
    actor.send({ type: "STEP.FAILED", stepId: "credit", error: original });
    actor.send(failed("refund", "TOOL_ERROR", "refund refused"));
    expect(actor.getSnapshot().value).toBe("failed");
    expect(actor.getSnapshot().context.error?.message).toBe("refund refused");
  });

  it("workflow - retries run out before compensation starts", () => {
    const wf = workflow({
      steps: [call("credit", { retry: { max: 2 }, onError: { steps: [call("refund")] } })],
    });
    const actor = start(wf);
    actor.send(failed("credit", "TOOL_TIMEOUT"));
    expect(keys(wf, actor)).toEqual(["credit#2"]);
    actor.send(failed("credit", "TOOL_TIMEOUT"));
    expect(keys(wf, actor)).toEqual(["refund#1"]);
  });

  it("workflow - onError without steps fails or continues straight away", () => {
    const failing = workflow({ steps: [call("a", { onError: onError("fail") }), call("b")] });
    const failActor = start(failing);
    failActor.send(failed("a", "TOOL_ERROR"));
    expect(failActor.getSnapshot().value).toBe("failed");
    const going = workflow({ steps: [call("a", { onError: onError("continue") }), call("b")] });
    const goActor = start(going);
    goActor.send(failed("a", "TOOL_ERROR"));
    expect(keys(going, goActor)).toEqual(["b#1"]);
  });
});

describe("workflow - cancel and deadline", () => {
  const wf = workflow({
    steps: [{ id: "both", parallel: [call("a"), call("b")] }, call("c")],
    deadline: "1m",
  });

  it("workflow - RUN.CANCEL ends a run mid-step as canceled, with nothing left to do", () => {
    const actor = start(wf);
    actor.send(ok("a", {}));
    actor.send({ type: "RUN.CANCEL", by: "request (ops)" });
    const snapshot = actor.getSnapshot();
    expect(snapshot.value).toBe("canceled");
    expect(snapshot.context.error).toEqual({ code: "CANCELED", message: "run canceled by request (ops)" });
    expect(pendingEffects(wf, snapshot)).toEqual([]);
    expect(stateOf(wf, actor)).toBe(TaskState.CANCELED);
    actor.send(ok("b", {}));
    expect(actor.getSnapshot().value).toBe("canceled");
  });

  it("workflow - RUN.CANCEL also ends a run waiting for approval", () => {
    const waitingWf = workflow({ steps: [{ id: "ok", approval: { prompt: "p", roles: ["manager"] } }] });
    const actor = start(waitingWf);
    actor.send({ type: "APPROVAL.REQUESTED", stepId: "ok", prompt: "p", maskedPrompt: "p" });
    actor.send({ type: "RUN.CANCEL", by: "request" });
    expect(stateOf(waitingWf, actor)).toBe(TaskState.CANCELED);
  });

  it("workflow - RUN.EXPIRED fails the run with DEADLINE_EXCEEDED", () => {
    const actor = start(wf);
    actor.send({ type: "RUN.EXPIRED" });
    expect(actor.getSnapshot().value).toBe("failed");
    expect(actor.getSnapshot().context.error?.code).toBe("DEADLINE_EXCEEDED");
    expect(stateOf(wf, actor)).toBe(TaskState.FAILED);
  });

  it("workflow - a finished run ignores cancel and expiry", () => {
    const actor = start(workflow({ steps: [call("a")] }));
    actor.send(ok("a", 1));
    actor.send(output(1));
    actor.send({ type: "RUN.CANCEL", by: "late" });
    actor.send({ type: "RUN.EXPIRED" });
    expect(actor.getSnapshot().value).toBe("completed");
    expect(actor.getSnapshot().context.error).toBeUndefined();
  });
});

describe("workflow - persisted snapshots", () => {
  const wf = workflow({
    steps: [
      call("contact", { retry: { max: 3 } }),
      { id: "fan", parallel: [call("x"), call("y")] },
      { id: "route", choice: [{ when: "{% true %}", goto: "approve" }], default: "last" },
      { id: "approve", approval: { prompt: "go?", roles: ["manager"] } },
      call("last"),
    ],
  });
  const script: RunMachineEvent[] = [
    failed("contact", "TOOL_TIMEOUT"),
    ok("contact", { name: "Ada" }),
    ok("y", "why"),
    ok("x", "ex"),
    { type: "CHOICE.DECIDED", stepId: "route", target: "approve" },
    { type: "APPROVAL.REQUESTED", stepId: "approve", prompt: "go?", maskedPrompt: "go?" },
    { type: "APPROVAL.ANSWERED", stepId: "approve", approved: true, by: "mia" },
    ok("last", "end"),
    output({ all: "done" }),
  ];

  it("workflow - a run restored from its persisted snapshot after every event goes on identically", () => {
    const straight = start(wf);
    let hopping = start(wf);
    for (const event of script) {
      straight.send(event);
      hopping.send(event);
      const restored = restore(wf, hopping);
      // Restoring runs no entry actions again: same attempts, same keys, same context.
      expect(keys(wf, restored)).toEqual(keys(wf, straight));
      expect(restored.getSnapshot().value).toEqual(straight.getSnapshot().value);
      expect(restored.getSnapshot().context).toEqual(straight.getSnapshot().context);
      expect(stateOf(wf, restored)).toBe(stateOf(wf, straight));
      hopping.stop();
      hopping = restored;
    }
    expect(hopping.getSnapshot().value).toBe("completed");
    expect(hopping.getSnapshot().context.output).toEqual({ all: "done" });
    expect(hopping.getSnapshot().context.steps).toMatchObject({
      contact: { name: "Ada" },
      fan: { x: "ex", y: "why" },
      approve: { approved: true, by: "mia" },
      last: "end",
    });
  });

  it("workflow - a restored step keeps its attempt number instead of starting a new one", () => {
    const actor = start(wf);
    actor.send(failed("contact", "TOOL_TIMEOUT"));
    const restored = restore(wf, restore(wf, actor));
    expect(keys(wf, restored)).toEqual(["contact#2"]);
    expect(restored.getSnapshot().context.attempts).toEqual({ contact: 2 });
  });
});

describe("workflow - validation", () => {
  function refusal(raw: Record<string, unknown>): LoomError {
    try {
      workflow(raw);
    } catch (error) {
      expect(error).toBeInstanceOf(LoomError);
      expect((error as LoomError).code).toBe("INVALID_WORKFLOW");
      return error as LoomError;
    }
    throw new Error("the workflow was accepted");
  }

  it("workflow - duplicate top-level step ids are refused, naming the step", () => {
    const error = refusal({ steps: [call("a"), call("a")] });
    expect(error.message).toContain('steps.1.id: step id "a" is used twice');
  });

  it("workflow - a parallel branch reusing a step id is refused", () => {
    const error = refusal({ steps: [call("a"), { id: "p", parallel: [call("b"), call("a")] }] });
    expect(error.message).toContain('steps.1.parallel.1.id: step id "a" is used twice');
  });

  it("workflow - a compensation step reusing a step id is refused", () => {
    const error = refusal({ steps: [call("a", { onError: { steps: [call("a")] } })] });
    expect(error.message).toContain('steps.0.onError.steps.0.id: step id "a" is used twice');
  });

  it("workflow - a goto to an unknown step is refused, naming the field", () => {
    const error = refusal({
      steps: [{ id: "route", choice: [{ when: "{% true %}", goto: "nowhere" }] }, call("a")],
    });
    expect(error.message).toContain('steps.0.choice.0.goto: no top-level step "nowhere" to go to');
    const fallback = refusal({
      steps: [{ id: "route", choice: [{ when: "{% true %}", goto: "a" }], default: "gone" }, call("a")],
    });
    expect(fallback.message).toContain("steps.0.default");
    const rejected = refusal({
      steps: [{ id: "ok", approval: { prompt: "p", roles: ["m"], onReject: { goto: "back" } } }],
    });
    expect(rejected.message).toContain("steps.0.approval.onReject.goto");
  });

  it("workflow - a goto into a parallel branch is refused", () => {
    const error = refusal({
      steps: [
        { id: "route", choice: [{ when: "{% true %}", goto: "b" }] },
        { id: "p", parallel: [call("b"), call("c")] },
      ],
    });
    expect(error.message).toContain('no top-level step "b"');
  });

  it("workflow - bad JSONata is refused before any run, naming the step and field", () => {
    const inWith = refusal({ steps: [call("a"), call("b", { with: { id: "{% $steps.a.( %}" } })] });
    expect(inWith.message).toMatch(/steps\[1\] \(b\)\.with\.id: invalid JSONata/);
    const inChoice = refusal({
      steps: [{ id: "route", choice: [{ when: "{% $input.x = = 1 %}", goto: "a" }] }, call("a")],
    });
    expect(inChoice.message).toMatch(/steps\[0\] \(route\)\.choice\[0\]\.when: invalid JSONata/);
    const inTemplate = refusal({
      steps: [{ id: "ok", approval: { prompt: "Escalate {% $steps.a. %} now?", roles: ["m"] } }],
    });
    expect(inTemplate.message).toMatch(/steps\[0\] \(ok\)\.approval\.prompt: invalid JSONata/);
    const inOutput = refusal({ steps: [call("a")], output: "{% { 'x': } %}" });
    expect(inOutput.message).toMatch(/^output: invalid JSONata/);
  });

  it("workflow - bad JSONata inside a compensation step or a branch is refused too", () => {
    const error = refusal({
      steps: [call("a", { onError: { steps: [call("undo", { with: { id: "{% ) %}" } })] } })],
    });
    expect(error.message).toMatch(/steps\[0\] \(a\)\.onError\.steps\[0\]\.with\.id: invalid JSONata/);
  });

  it("workflow - a field error inside a step names that field, not just the step", () => {
    expect(refusal({ steps: [call("a", { retry: { on: ["NOPE"] } })] }).message).toContain(
      "steps.0.retry.on.0",
    );
    expect(refusal({ steps: [{ id: "a", call: "get_contact" }] }).message).toContain(
      "steps.0.call: write <server>.<name>",
    );
    const branch = refusal({ steps: [{ id: "p", parallel: [call("b"), call("c", { timeout: "soon" })] }] });
    expect(branch.message).toContain("steps.0.parallel.1.timeout");
    expect(refusal({ steps: [{ id: "ok", approval: { prompt: "p" } }] }).message).toContain(
      "steps.0.approval.roles",
    );
  });

  it("workflow - a valid definition gets its defaults", () => {
    const wf = workflow({ steps: [call("a", { retry: { max: 2 } })] });
    expect(wf.version).toBe(1);
    expect(wf.steps[0]).toMatchObject({ retry: { max: 2, backoff: 200 } });
  });
});
