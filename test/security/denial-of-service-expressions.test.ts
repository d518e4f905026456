import type { NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TaskState } from "../../schemas/a2a.ts";
import { WorkflowGraphContract } from "../../schemas/contracts.ts";
import { ErrorCode } from "../../schemas/errors.ts";
import { Subjects } from "../../schemas/subjects.ts";
import type { LoomError } from "../../services/kit/index.ts";
import { request } from "../../services/kit/index.ts";
import { AttackClass, attack, control } from "../helpers/attack-tally.ts";
import { type Loom, NatsUser, startLoom, tokenFor } from "../helpers/loom.ts";
import { type RunActors, type RunOutcome, submitAndWatch } from "../helpers/runs.ts";

/**
 * A viewer's expressions at every place a workflow evaluates one: a call's `with`, a parallel
 * branch's `with`, a choice's `when`, an approval's prompt, a read's URI, a prompt step's `with`,
 * a delegation's message, the run's output. Each attack must end its run with a typed error, and
 * the orchestrator must go on serving: a control run submitted while the longest attacks are
 * evaluated completes before they end, within {@link CONTROL_BOUND_MS}.
 */

const viewer = tokenFor("vic", "viewer");
/**
 * Evaluation (CPU) time each field gets here: long, so that an attack running to the limit lasts
 * seconds, and an orchestrator whose event loop it held would visibly stall the control run.
 */
const TIMEOUT_MS = 3_000;
/** How long the control run may take while an attack is evaluated (the machine is shared and loaded). */
const CONTROL_BOUND_MS = 2_000;
/** How soon an attack that meets a size limit must be refused, end to end. */
const CUT_OFF_MS = 10_000;

const tenfold = (name: string) => `$join([${Array(10).fill(`$${name}`).join(",")}])`;

/** Expressions that would build 10^7 characters, a shared structure of 10^9 items, and so on. */
const Attack = {
  nestedJoin: `($s := $pad("", 100, "x"); $a := ${tenfold("s")}; $b := ${tenfold("a")}; $c := ${tenfold("b")}; $d := ${tenfold("c")}; $e := ${tenfold("d")}; $length($e))`,
  doubling: '($f := function($s, $n) { $n = 0 ? $s : $f($s & $s, $n - 1) }; $length($f("xxxxxxxxxx", 30)))',
  sharedArrays:
    "($a := [1..1000]; $b := $map([1..1000], function() { $a }); $c := $map([1..1000], function() { $b }); $c = $c)",
  sortWithFunction: "$sort($reverse([1..20000]), function($a, $b) { $a > $b })",
  replaceEveryCharacter: '$replace($pad("", 1000000, "a"), "a", "bb")',
  pictureWidth: '$fromMillis(0, "[Y,40000000]")',
  caseBlindBacktracking: '$contains($pad("", 40, "a") & "!", /(a+)+$/i)',
  endlessLoop: "($f := function($n) { $f($n + 1) }; $f(0))",
  orderBy: "$count([1..99000]^($))",
} as const;

const expression = (source: string) => `{% ${source} %}`;
const now = { id: "now", call: "time.get_time" };

const refusedWith = (outcome: RunOutcome, code: ErrorCode, limit?: string) =>
  outcome.state === TaskState.FAILED &&
  outcome.error?.code === code &&
  (limit === undefined || outcome.error.details?.limit === limit);

describe("security - denial of service through a caller's expressions, at every place one is evaluated", () => {
  let loom: Loom;
  let runs: RunActors;
  let submitter: NatsConnection;

  beforeAll(async () => {
    loom = await startLoom({
      env: { LOOM_EXPRESSION_TIMEOUT_MS: String(TIMEOUT_MS) },
      readyTimeoutMs: 120_000,
    });
    submitter = await loom.connectAs(NatsUser.SUBMITTER);
    runs = { submitter, observer: loom.observer };
  }, 180_000);
  afterAll(async () => {
    await loom?.[Symbol.asyncDispose]();
  });

  const inline = (workflow: unknown, input: Record<string, unknown> = {}) =>
    submitAndWatch(runs, { workflow, input, token: viewer, timeoutMs: 60_000 });

  /** A one-step run that completes; its time is what a caller waits while the attack runs. */
  const controlRun = () => inline({ id: "control", steps: [now], output: "{% $count([1, 2, 3]) %}" });

  /**
   * Runs `attackRun` and, once it has had time to start evaluating, a control run: the control must
   * complete before the attack is refused, and within {@link CONTROL_BOUND_MS}.
   */
  async function whileEvaluating(name: string, attackRun: Promise<RunOutcome>): Promise<RunOutcome> {
    const started = Date.now();
    const attacked = attackRun.then((outcome) => ({ outcome, endedAt: Date.now() }));
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    const controlled = await controlRun();
    const controlEndedAt = Date.now();
    const { outcome, endedAt } = await attacked;
    await control(
      `a run submitted while ${name} is evaluated completes first, within ${CONTROL_BOUND_MS} ms`,
      async () =>
        controlled.state === TaskState.COMPLETED &&
        controlled.output === 3 &&
        controlled.ms < CONTROL_BOUND_MS &&
        controlEndedAt < endedAt &&
        endedAt - started >= TIMEOUT_MS,
    );
    return outcome;
  }

  it("expressions - a call's with: nested $join is refused before it builds 10^7 characters", async () => {
    await attack(AttackClass.DENIAL_OF_SERVICE, "nested $join in a call's with", async () => {
      const outcome = await inline({
        id: "with-join",
        steps: [{ id: "now", call: "time.get_time", with: { timezone: expression(Attack.nestedJoin) } }],
      });
      return (
        refusedWith(outcome, ErrorCode.LIMIT_EXCEEDED, "LOOM_EXPRESSION_MAX_VALUE") && outcome.ms < CUT_OFF_MS
      );
    });
    await control("a call's with within the limits renders", async () => {
      const outcome = await inline({
        id: "with-ok",
        steps: [{ id: "now", call: "time.get_time", with: { timezone: "{% $join(['U', 'T', 'C']) %}" } }],
      });
      return outcome.state === TaskState.COMPLETED;
    });
  });

  it("expressions - a parallel branch's with: $replace of every character is refused before it runs", async () => {
    await attack(AttackClass.DENIAL_OF_SERVICE, "$replace of 10^6 matches in a parallel branch", async () => {
      const outcome = await inline({
        id: "parallel-replace",
        steps: [
          {
            id: "both",
            parallel: [
              now,
              {
                id: "then",
                call: "time.get_time",
                with: { timezone: expression(Attack.replaceEveryCharacter) },
              },
            ],
          },
        ],
      });
      return (
        refusedWith(outcome, ErrorCode.LIMIT_EXCEEDED, "LOOM_EXPRESSION_MAX_SEQUENCE") &&
        outcome.ms < CUT_OFF_MS
      );
    });
  });

  it("expressions - a choice's when: an endless loop stops at the time limit while other runs go on", async () => {
    let outcome: RunOutcome | undefined;
    await attack(AttackClass.DENIAL_OF_SERVICE, "an endless loop in a choice's when", async () => {
      outcome = await whileEvaluating(
        "an endless loop",
        inline({
          id: "when-loop",
          steps: [
            now,
            { id: "route", choice: [{ when: expression(Attack.endlessLoop), goto: "done" }] },
            { id: "done", call: "time.get_time" },
          ],
        }),
      );
      return refusedWith(outcome, ErrorCode.LIMIT_EXCEEDED, "LOOM_EXPRESSION_TIMEOUT_MS");
    });
    expect(outcome?.error?.message).toContain("when");
  });

  it("expressions - the output: order-by over 99,000 items (JSONata's quadratic merge) stops at the time limit while other runs go on", async () => {
    await attack(AttackClass.DENIAL_OF_SERVICE, "order-by over 99,000 items in the output", async () => {
      const outcome = await whileEvaluating(
        "an order-by",
        inline({ id: "output-order", steps: [now], output: expression(Attack.orderBy) }),
      );
      return refusedWith(outcome, ErrorCode.LIMIT_EXCEEDED, "LOOM_EXPRESSION_TIMEOUT_MS");
    });
  });

  it("expressions - the output: a string doubled thirty times stops at the value limit", async () => {
    await attack(AttackClass.DENIAL_OF_SERVICE, "a string doubled in a recursion in the output", async () => {
      const outcome = await inline({
        id: "output-doubling",
        steps: [now],
        output: expression(Attack.doubling),
      });
      return (
        refusedWith(outcome, ErrorCode.LIMIT_EXCEEDED, "LOOM_EXPRESSION_MAX_VALUE") && outcome.ms < CUT_OFF_MS
      );
    });
  });

  it("expressions - the output: many fields, each an endless loop, share one time budget", async () => {
    await attack(AttackClass.DENIAL_OF_SERVICE, "twenty endless loops in one output", async () => {
      const output = Object.fromEntries(
        Array.from({ length: 20 }, (_, index) => [`f${index}`, expression(Attack.endlessLoop)]),
      );
      const outcome = await whileEvaluating(
        "twenty endless loops",
        inline({ id: "output-many", steps: [now], output }),
      );
      return (
        refusedWith(outcome, ErrorCode.LIMIT_EXCEEDED, "LOOM_EXPRESSION_TIMEOUT_MS") &&
        outcome.ms < 3 * TIMEOUT_MS
      );
    });
  });

  it("expressions - an approval's prompt: $sort with a function is charged its n² copies first", async () => {
    await attack(
      AttackClass.DENIAL_OF_SERVICE,
      "$sort of 20,000 items with a function in an approval prompt",
      async () => {
        const outcome = await inline({
          id: "approval-sort",
          steps: [
            now,
            {
              id: "ask",
              approval: { prompt: `Sorted: ${expression(Attack.sortWithFunction)}`, roles: ["manager"] },
            },
          ],
        });
        return (
          refusedWith(outcome, ErrorCode.LIMIT_EXCEEDED, "LOOM_EXPRESSION_MAX_BUILT") &&
          outcome.ms < CUT_OFF_MS
        );
      },
    );
  });

  it("expressions - a read's URI: a picture 40 million wide is refused with a typed error", async () => {
    await attack(
      AttackClass.DENIAL_OF_SERVICE,
      "$fromMillis with a 40,000,000-wide picture in a read URI",
      async () => {
        const outcome = await inline({
          id: "read-picture",
          steps: [{ id: "contact", read: `mcp://crm/contacts/${expression(Attack.pictureWidth)}` }],
        });
        return (
          refusedWith(outcome, ErrorCode.EXPRESSION_FAILED) &&
          (outcome.error?.message.includes("at most 64") ?? false) &&
          outcome.ms < CUT_OFF_MS
        );
      },
    );
  });

  it("expressions - a prompt step's with: arrays shared a million times over are refused at the value limit", async () => {
    await attack(
      AttackClass.DENIAL_OF_SERVICE,
      "= over 10^9 shared items in a prompt step's with",
      async () => {
        const outcome = await inline({
          id: "prompt-shared",
          steps: [
            { id: "summary", prompt: "crm.summarize", with: { text: expression(Attack.sharedArrays) } },
          ],
        });
        return (
          refusedWith(outcome, ErrorCode.LIMIT_EXCEEDED, "LOOM_EXPRESSION_MAX_VALUE") &&
          outcome.ms < CUT_OFF_MS
        );
      },
    );
  });

  it("expressions - a delegation's message: a backtracking regular expression the linear engine cannot run is refused", async () => {
    await attack(AttackClass.DENIAL_OF_SERVICE, "/(a+)+$/i in a delegation's message", async () => {
      const outcome = await inline({
        id: "delegate-regex",
        steps: [
          { id: "ask", delegate: { agent: "research", message: expression(Attack.caseBlindBacktracking) } },
        ],
      });
      return (
        refusedWith(outcome, ErrorCode.INVALID_WORKFLOW) &&
        (outcome.error?.message.includes("linear time") ?? false) &&
        outcome.ms < CUT_OFF_MS
      );
    });
    await attack(AttackClass.DENIAL_OF_SERVICE, "/(a+)+$/i built at run time, through $eval", async () => {
      const outcome = await inline({
        id: "delegate-eval-regex",
        steps: [
          {
            id: "ask",
            delegate: {
              agent: "research",
              message: expression(`$eval(${JSON.stringify(Attack.caseBlindBacktracking)})`),
            },
          },
        ],
      });
      return (
        refusedWith(outcome, ErrorCode.EXPRESSION_FAILED) &&
        (outcome.error?.message.includes("linear time") ?? false) &&
        outcome.ms < CUT_OFF_MS
      );
    });
    await control("a backtracking pattern without the i flag runs, in linear time", async () => {
      const outcome = await inline({
        id: "output-regex",
        steps: [now],
        output: expression('$contains($pad("", 40, "a") & "!", /(a+)+$/)'),
      });
      return outcome.state === TaskState.COMPLETED && outcome.output === false && outcome.ms < CUT_OFF_MS;
    });
  });

  it("expressions - a run's input is data: an expression inside it is never evaluated", async () => {
    await attack(AttackClass.DENIAL_OF_SERVICE, "an expression smuggled in a run's input", async () => {
      const smuggled = expression(Attack.endlessLoop);
      const outcome = await inline(
        { id: "echo", steps: [now], output: "{% $input.text %}" },
        { text: smuggled },
      );
      return outcome.state === TaskState.COMPLETED && outcome.output === smuggled && outcome.ms < TIMEOUT_MS;
    });
  });

  it("expressions - workflows.graph of a definition carrying a 200 KB expression answers with a typed error", async () => {
    await attack(AttackClass.DENIAL_OF_SERVICE, "a 200 KB expression sent to workflows.graph", async () => {
      const workflow = {
        id: "graph-big",
        steps: [now],
        output: expression(Array(50_000).fill("1").join("+")),
      };
      const error = await request(
        submitter,
        Subjects.WORKFLOWS_GRAPH,
        WorkflowGraphContract,
        { workflow },
        { timeoutMs: 10_000 },
      ).then(
        () => undefined,
        (caught: LoomError) => caught,
      );
      return error?.code === ErrorCode.INVALID_WORKFLOW;
    });
    await control(
      "a run completes after the graph request",
      async () => (await controlRun()).state === TaskState.COMPLETED,
    );
  });
});
