import { describe, expect, it } from "vitest";
import { ErrorCode } from "../../schemas/errors.ts";
import { LoomError } from "../../services/kit/index.ts";
import { OutboundAllowList, OutboundTargets } from "../../services/orchestrator/a2a/outbound-url.ts";
import {
  DEFAULT_EXPRESSION_LIMITS,
  type ExpressionLimits,
  renderValue,
} from "../../services/orchestrator/expressions.ts";
import { assertInputWithin, DEFAULT_LIMITS } from "../../services/orchestrator/limits.ts";
import { WorkflowCatalog } from "../../services/orchestrator/workflow-catalog.ts";

const noDelegates = OutboundAllowList.parse(OutboundTargets.DELEGATE, []);

const render = (expression: string, limits: ExpressionLimits = DEFAULT_EXPRESSION_LIMITS) =>
  renderValue(`{% ${expression} %}`, { input: {}, steps: {}, limits }, "test");

async function refusal(work: () => unknown): Promise<LoomError> {
  const error = await Promise.resolve()
    .then(work)
    .then(
      () => undefined,
      (caught: unknown) => caught,
    );
  expect(error).toBeInstanceOf(LoomError);
  return error as LoomError;
}

const calls = (count: number) =>
  Array.from({ length: count }, (_, index) => ({ id: `s${index}`, call: "time.get_time" }));

describe("limits - expressions", () => {
  it("limits - a huge range is refused at once, naming LOOM_EXPRESSION_MAX_SEQUENCE", async () => {
    const started = Date.now();
    const error = await refusal(() => render("$count([1..1500000].($*2))"));
    expect(Date.now() - started).toBeLessThan(200);
    expect(error.code).toBe(ErrorCode.LIMIT_EXCEEDED);
    expect(error.message).toContain("LOOM_EXPRESSION_MAX_SEQUENCE");
    expect(error.details).toEqual({
      limit: "LOOM_EXPRESSION_MAX_SEQUENCE",
      max: DEFAULT_EXPRESSION_LIMITS.maxSequence,
    });
  });

  it("limits - unbounded recursion is refused, naming LOOM_EXPRESSION_MAX_DEPTH", async () => {
    const error = await refusal(() => render("($f := function($n) { 1 + $f($n + 1) }; $f(0))"));
    expect(error.code).toBe(ErrorCode.LIMIT_EXCEEDED);
    expect(error.details).toMatchObject({ limit: "LOOM_EXPRESSION_MAX_DEPTH" });
  });

  it("limits - a long evaluation stops at LOOM_EXPRESSION_TIMEOUT_MS", async () => {
    const limits = { ...DEFAULT_EXPRESSION_LIMITS, timeoutMs: 100 };
    const started = Date.now();
    const error = await refusal(() => render("($f := function($n) { $f($n + 1) }; $f(0))", limits));
    expect(Date.now() - started).toBeLessThan(2_000);
    expect(error.details).toMatchObject({ limit: "LOOM_EXPRESSION_TIMEOUT_MS", max: 100 });
  });

  it("limits - a result over LOOM_EXPRESSION_MAX_RESULT_BYTES is refused with its size", async () => {
    const error = await refusal(() => render('$join([1..3].$pad("", 100000, "x"))'));
    expect(error.details).toEqual({
      limit: "LOOM_EXPRESSION_MAX_RESULT_BYTES",
      value: 300_002,
      max: DEFAULT_EXPRESSION_LIMITS.maxResultBytes,
    });
  });

  it("limits - $pad refuses a width over LOOM_EXPRESSION_MAX_VALUE before building it", async () => {
    const error = await refusal(() => render('$pad("", 400000000, "x")'));
    expect(error.details).toEqual({
      limit: "LOOM_EXPRESSION_MAX_VALUE",
      value: 400_000_000,
      max: DEFAULT_EXPRESSION_LIMITS.maxValue,
    });
    expect(await render('$pad("ab", 5, "-") & "|" & $pad("ab", -5, "xy")')).toBe("ab---|xyxab");
  });

  it("limits - expressions within the limits evaluate as before", async () => {
    expect(await render("$count([1..1000].($*2))")).toBe(1000);
    expect(await render("($f := function($n) { $n = 0 ? 0 : $f($n - 1) }; $f(20))")).toBe(0);
  });
});

describe("limits - definitions and input", () => {
  const catalog = new WorkflowCatalog(DEFAULT_LIMITS, noDelegates);

  it("limits - a workflow over LOOM_MAX_STEPS is refused with the count", async () => {
    const error = await refusal(() => catalog.parse({ id: "wide", steps: calls(1_500) }, "test"));
    expect(error.code).toBe(ErrorCode.LIMIT_EXCEEDED);
    expect(error.details).toEqual({ limit: "LOOM_MAX_STEPS", value: 1_500, max: DEFAULT_LIMITS.maxSteps });
  });

  it("limits - parallel branches and compensation steps count as steps", async () => {
    const limits = { ...DEFAULT_LIMITS, maxSteps: 4 };
    const workflow = {
      id: "nested",
      steps: [
        { id: "p", parallel: calls(3) },
        { id: "c", call: "time.get_time", onError: { steps: [{ id: "undo", call: "time.get_time" }] } },
      ],
    };
    const error = await refusal(() => new WorkflowCatalog(limits, noDelegates).parse(workflow, "test"));
    expect(error.details).toEqual({ limit: "LOOM_MAX_STEPS", value: 6, max: 4 });
    expect(new WorkflowCatalog({ ...limits, maxSteps: 6 }, noDelegates).parse(workflow, "test").id).toBe(
      "nested",
    );
  });

  it("limits - a definition over LOOM_MAX_DEFINITION_BYTES is refused before it is parsed", async () => {
    const raw = {
      id: "big",
      steps: [{ id: "a", call: "time.get_time", with: { pad: "x".repeat(300_000) } }],
    };
    const error = await refusal(() => catalog.parse(raw, "test"));
    expect(error.code).toBe(ErrorCode.LIMIT_EXCEEDED);
    expect(error.details).toMatchObject({ limit: "LOOM_MAX_DEFINITION_BYTES" });
    expect(catalog.parse({ id: "small", steps: calls(3) }, "test").steps).toHaveLength(3);
  });

  it("limits - an input over LOOM_MAX_INPUT_BYTES is refused with its size", async () => {
    const error = await refusal(() => assertInputWithin({ blob: "x".repeat(70_000) }, DEFAULT_LIMITS));
    expect(error.details).toEqual({
      limit: "LOOM_MAX_INPUT_BYTES",
      value: 70_011,
      max: DEFAULT_LIMITS.maxInputBytes,
    });
    expect(() => assertInputWithin({ contactId: "c-1" }, DEFAULT_LIMITS)).not.toThrow();
  });
});
