import { describe, expect, it } from "vitest";
import { ErrorCode } from "../../schemas/errors.ts";
import { LoomError } from "../../services/kit/index.ts";
import { OutboundAllowList, OutboundTargets } from "../../services/orchestrator/a2a/outbound-url.ts";
import {
  DEFAULT_EXPRESSION_LIMITS,
  type ExpressionLimits,
  renderValue,
} from "../../services/orchestrator/expressions.ts";
import { DEFAULT_LIMITS } from "../../services/orchestrator/limits.ts";
import { WorkflowCatalog } from "../../services/orchestrator/workflow-catalog.ts";

const noDelegates = OutboundAllowList.parse(OutboundTargets.DELEGATE, []);

const scope = (limits: ExpressionLimits) => ({ input: { name: "Ada" }, steps: {}, limits });
const render = (expression: string, limits: ExpressionLimits = DEFAULT_EXPRESSION_LIMITS) =>
  renderValue(`{% ${expression} %}`, scope(limits), "test");

/**
 * How much CPU time an attack may cost before it is refused here. CPU time of this thread (where
 * evaluation runs), not wall time: the machine is shared, and a test waiting for a core is not
 * the expression's doing.
 */
const PROMPTLY_MS = 3_000;

/** CPU milliseconds this thread has used since `since`. */
function cpuMs(since: NodeJS.CpuUsage): number {
  const used = process.threadCpuUsage(since);
  return (used.user + used.system) / 1_000;
}

/** The refusal `work` ends with, and the CPU time it took. */
async function refusal(work: () => Promise<unknown>): Promise<{ error: LoomError; ms: number }> {
  const started = process.threadCpuUsage();
  const error = await work().then(
    () => undefined,
    (caught: unknown) => caught,
  );
  expect(error).toBeInstanceOf(LoomError);
  return { error: error as LoomError, ms: cpuMs(started) };
}

async function refusedAt(expression: string, limit: string, limits = DEFAULT_EXPRESSION_LIMITS) {
  const { error, ms } = await refusal(() => render(expression, limits));
  expect(error.code).toBe(ErrorCode.LIMIT_EXCEEDED);
  expect(error.details).toMatchObject({ limit });
  expect(ms).toBeLessThan(PROMPTLY_MS);
}

async function failsWith(expression: string, message: RegExp) {
  const { error, ms } = await refusal(() => render(expression));
  expect(error.code).toBe(ErrorCode.EXPRESSION_FAILED);
  expect(error.message).toMatch(message);
  expect(ms).toBeLessThan(PROMPTLY_MS);
}

/** Ten copies of `$name` joined: each level multiplies the length by ten. */
const tenfold = (name: string) => `$join([${Array(10).fill(`$${name}`).join(",")}])`;

describe("expression bounds - intermediate values", () => {
  it("expression bounds - nested $join of ten copies per level is refused before it builds 10^7 characters", async () => {
    await refusedAt(
      `($s := $pad("", 100, "x"); $a := ${tenfold("s")}; $b := ${tenfold("a")}; $c := ${tenfold("b")}; $d := ${tenfold("c")}; $e := ${tenfold("d")}; $length($e))`,
      "LOOM_EXPRESSION_MAX_VALUE",
    );
    expect(await render(`($s := "ab"; $length(${tenfold("s")}))`)).toBe(20);
  });

  it("expression bounds - a string doubled in a recursion stops at the value limit", async () => {
    await refusedAt(
      '($f := function($s, $n) { $n = 0 ? $s : $f($s & $s, $n - 1) }; $length($f("xxxxxxxxxx", 26)))',
      "LOOM_EXPRESSION_MAX_VALUE",
    );
    expect(
      await render('($f := function($s, $n) { $n = 0 ? $s : $f($s & $s, $n - 1) }; $length($f("x", 10)))'),
    ).toBe(1_024);
  });

  it("expression bounds - an array of shared arrays is sized as JSON would write it, so = and $string cannot walk 10^9 items", async () => {
    await refusedAt(
      "($a := [1..1000]; $b := $map([1..1000], function() { $a }); $c := $map([1..1000], function() { $b }); $c = $c)",
      "LOOM_EXPRESSION_MAX_VALUE",
    );
    expect(
      await render("($a := [1..10]; $b := $map([1..10], function() { $a }); $count($b) * $count($a))"),
    ).toBe(100);
  });

  it("expression bounds - many values each within the limit stop at the built values' limit", async () => {
    const limits = { ...DEFAULT_EXPRESSION_LIMITS, maxBuilt: 1_000_000 };
    await refusedAt('$count([1..200].($pad("", 10000, "x")))', "LOOM_EXPRESSION_MAX_BUILT", limits);
    expect(await render('$count([1..20].($pad("", 10000, "x")))', limits)).toBe(20);
  });

  it("expression bounds - every array on the way is held to the sequence limit, however it was built", async () => {
    await refusedAt('$count($split($pad("", 1000000, "a"), ""))', "LOOM_EXPRESSION_MAX_SEQUENCE");
    await refusedAt('$count($match($pad("", 300000, "a"), /a/))', "LOOM_EXPRESSION_MAX_SEQUENCE");
    expect(await render('$count($match($pad("", 300000, "a"), /a/, 10))')).toBe(10);
    expect(await render('$split("a,b,c", ",") ~> $join("|")')).toBe("a|b|c");
  });

  it("expression bounds - $replace is refused before it builds over the limits", async () => {
    await refusedAt('$replace($pad("", 1000000, "a"), "a", "bb")', "LOOM_EXPRESSION_MAX_SEQUENCE");
    await refusedAt('$replace($pad("", 1000, "a"), "a", $pad("", 2000, "b"))', "LOOM_EXPRESSION_MAX_VALUE");
    expect(await render('$replace("hello world", /o/, function($m) { $uppercase($m.match) })')).toBe(
      "hellO wOrld",
    );
    expect(await render('$replace("abcabc", "b", "X", 1)')).toBe("aXcabc");
  });
});

describe("expression bounds - native functions that took seconds", () => {
  it("expression bounds - $sort of 99,000 numbers finishes at once; with a function, its n² copies are charged first", async () => {
    expect(await render("$sort($reverse([1..99000]))[0]")).toBe(1);
    await refusedAt("$sort([1..10000], function($a, $b) { $a < $b })", "LOOM_EXPRESSION_MAX_BUILT");
    expect(await render("$sort([3, 1, 2], function($a, $b) { $a < $b })")).toEqual([3, 2, 1]);
    expect(await render('$sort(["b", "a", "c"])')).toEqual(["a", "b", "c"]);
  });

  it("expression bounds - order-by over 99,000 items stops at the time limit", async () => {
    await refusedAt("$count([1..99000]^($))", "LOOM_EXPRESSION_TIMEOUT_MS");
    expect(await render("[3, 1, 2]^($)")).toEqual([1, 2, 3]);
  });

  it("expression bounds - $distinct of 60,000 items is linear, and keeps JSONata's deep equality", async () => {
    const started = process.threadCpuUsage();
    expect(await render("$count($distinct([1..60000]))")).toBe(60_000);
    expect(cpuMs(started)).toBeLessThan(PROMPTLY_MS);
    expect(await render('$distinct([1, 1, "1", {"a": 1, "b": 2}, {"b": 2, "a": 1}, [1], [1]])')).toEqual([
      1,
      "1",
      { a: 1, b: 2 },
      [1],
    ]);
  });

  it("expression bounds - a backtracking regular expression runs in linear time; one that cannot is refused", async () => {
    const started = process.threadCpuUsage();
    expect(await render('$contains("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa!", /(a+)+$/)')).toBe(false);
    expect(cpuMs(started)).toBeLessThan(PROMPTLY_MS);
    await failsWith('$contains("aaaa!", /(a+)+$/i)', /cannot run in linear time/);
    await failsWith('$match("abab", /(ab)\\1/)', /cannot run in linear time/);
    expect(await render('$join($match("a1b22", /[0-9]+/).match, ",")')).toBe("1,22");
    // A definition is refused such a literal when it is checked, before any run.
    const catalog = new WorkflowCatalog(DEFAULT_LIMITS, noDelegates);
    const error = await refusal(async () =>
      catalog.parse(
        { id: "w", steps: [{ id: "a", call: "time.get_time", with: { x: "{% /a+/i %}" } }] },
        "test",
      ),
    );
    expect(error.error.code).toBe(ErrorCode.INVALID_WORKFLOW);
    expect(error.error.message).toMatch(/linear time/);
    expect(
      catalog.parse(
        { id: "w", steps: [{ id: "a", call: "time.get_time", with: { x: "{% /a+/ %}" } }] },
        "test",
      ).id,
    ).toBe("w");
  });

  it("expression bounds - pictures are bounded: a date component 40 million wide, a 2,000-character number picture", async () => {
    await failsWith('$fromMillis(0, "[Y,40000000]")', /width of 40000000; at most 64/);
    await failsWith('$now("[H,2000]")', /width of 2000/);
    await failsWith('$formatNumber(1, $pad("", 2000, "0"))', /picture is 2000 characters/);
    expect(await render('$fromMillis(0, "[Y0001]-[M01]-[D01]")')).toBe("1970-01-01");
    expect(await render('$formatNumber(1234.5, "#,##0.00")')).toBe("1,234.50");
    expect(await render("$now() = $now()")).toBe(true);
  });

  it("expression bounds - $eval parses at most 64 KiB and evaluates under the same budget", async () => {
    await failsWith('$eval($pad("", 70000, "1"))', /\$eval's source is 70000 characters/);
    await refusedAt('$eval("$count([1..1500000])")', "LOOM_EXPRESSION_MAX_SEQUENCE");
    expect(await render('$eval("1 + 2")')).toBe(3);
  });

  it("expression bounds - an expression that evaluates itself through $eval stops at the nesting limit", async () => {
    // Red team 4: both ran the orchestrator out of heap, again after every restart.
    await refusedAt("( $s := '$eval($s)'; $eval($s) )", "MAX_EVAL_NESTING");
    await refusedAt("( $f := function($n){ $eval('$f($n+1)') }; $f(0) )", "MAX_EVAL_NESTING");
    // Control: $eval inside $eval still works.
    expect(await render(`$eval('$eval("1 + 2")')`)).toBe(3);
  });
});

describe("expression bounds - time", () => {
  it("expression bounds - the event loop keeps turning while an endless loop is evaluated", async () => {
    // Measured in this thread's CPU time between two ticks of a timer: an evaluation holding the
    // loop would show as its whole budget; waiting for a core on a loaded machine shows as nothing.
    let last = process.threadCpuUsage();
    let longest = 0;
    const ticker = setInterval(() => {
      longest = Math.max(longest, cpuMs(last));
      last = process.threadCpuUsage();
    }, 5);
    const limits = { ...DEFAULT_EXPRESSION_LIMITS, timeoutMs: 1_500 };
    const { error } = await refusal(() => render("($f := function($n) { $f($n + 1) }; $f(0))", limits));
    clearInterval(ticker);
    longest = Math.max(longest, cpuMs(last));
    expect(error.details).toMatchObject({ limit: "LOOM_EXPRESSION_TIMEOUT_MS" });
    expect(longest).toBeLessThan(300);
  }, 60_000);

  it("expression bounds - the expressions of one field share one time budget", async () => {
    const loop = "{% ($f := function($n) { $f($n + 1) }; $f(0)) %}";
    const limits = { ...DEFAULT_EXPRESSION_LIMITS, timeoutMs: 200 };
    const fields = Object.fromEntries(Array.from({ length: 20 }, (_, index) => [`k${index}`, loop]));
    const { error, ms } = await refusal(() => renderValue(fields, scope(limits), "with"));
    expect(error.details).toMatchObject({ limit: "LOOM_EXPRESSION_TIMEOUT_MS" });
    // One budget's worth of CPU time, not twenty.
    expect(ms).toBeLessThan(5 * 200);
    expect(
      await renderValue({ a: "{% $input.name %}", b: "Hi {% $input.name %}!" }, scope(limits), "with"),
    ).toEqual({
      a: "Ada",
      b: "Hi Ada!",
    });
  }, 60_000);
});
