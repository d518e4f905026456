import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TaskState } from "../../schemas/a2a.ts";
import { RunEventSchema } from "../../schemas/run.ts";
import { type LedgerRuns, startLedgerRuns } from "../helpers/ledger-runs.ts";
import { type CliResult, tokenFor } from "../helpers/loom.ts";

const ann = tokenFor("ann", "analyst");
const ops = tokenFor("ops", "admin");

/**
 * `loom runs get`, `runs events` and `runs rerun` as a user sees them, through the whole stack:
 * what the CLI prints and exits with, and what the ledger says happened (its tool calls).
 */
describe("e2e - runs: the step timeline, re-attaching to a run, rerunning it", () => {
  let stack: LedgerRuns;
  const cli = (args: string[], token = ann, timeoutMs = 45_000) => stack.loom.cli(args, { token, timeoutMs });

  /** Submits a workflow file as ann and returns the new run's id. */
  async function submit(name: "pay" | "pay-bad" | "count", input: Record<string, unknown>): Promise<string> {
    const submitted = await cli(["submit", stack.workflow(name), "--input", JSON.stringify(input)]);
    expect(submitted.code, submitted.stderr).toBe(0);
    return submitted.stdout.trim();
  }

  const jsonOf = (result: CliResult) => {
    expect(result.code, result.stderr).toBe(0);
    return JSON.parse(result.stdout);
  };

  beforeAll(async () => {
    stack = await startLedgerRuns();
  }, 120_000);
  afterAll(async () => {
    await stack?.[Symbol.asyncDispose]();
  });

  it("e2e - loom runs get shows each step as a timeline, what a waiting run asks, and who may answer", async () => {
    const runId = await submit("pay", { to: "b" });
    expect(await stack.reaches(runId, TaskState.INPUT_REQUIRED)).toBe("input-required");

    const shown = await cli(["runs", "get", runId]);
    expect(shown.code, shown.stderr).toBe(0);
    const lines = shown.stdout.split("\n");
    const row = (stepId: string) => lines.find((line) => line.startsWith(`${stepId} `)) ?? "";
    expect(shown.stdout).toMatch(/STEP\s+KIND\s+STATE\s+ATTEMPTS\s+STARTED\s+DURATION\s+ERROR/);
    expect(row("debit")).toMatch(
      /^debit\s+call ledger\.append\s+completed\s+1\s+\d\d:\d\d:\d\d\.\d{3}\s+\d+(ms|\.\ds)/,
    );
    expect(row("approve")).toMatch(/^approve\s+approval\s+waiting for \S+\s+0\s+\d\d:/);
    expect(row("credit")).toMatch(/^credit\s+call ledger\.append\s+pending\s+0$/);
    expect(shown.stdout).toContain("waiting for\napprove (approval): Pay b 5?");
    expect(shown.stdout).toContain("who:      roles manager, admin; you may not answer");
    expect(shown.stdout).toContain(`answer:   loom runs input ${runId} --step approve --approve or --reject`);

    // An admin holds a role the approval names: it may answer.
    const byAdmin = jsonOf(await cli(["runs", "get", runId, "--json"], ops));
    expect(byAdmin.state).toBe("input-required");
    expect(byAdmin.steps.map((step: { stepId: string; state: string }) => [step.stepId, step.state])).toEqual(
      [
        ["debit", "completed"],
        ["approve", "waiting"],
        ["credit", "pending"],
      ],
    );
    expect(byAdmin.waiting).toEqual([
      {
        stepId: "approve",
        kind: "approval",
        prompt: "Pay b 5?",
        roles: ["manager", "admin"],
        callerMayAnswer: true,
      },
    ]);

    const answered = await cli(["runs", "input", runId, "--approve"], ops);
    expect(answered.code, answered.stderr).toBe(0);
    expect(await stack.reaches(runId, TaskState.COMPLETED)).toBe("completed");
    const done = jsonOf(await cli(["runs", "get", runId, "--json"]));
    expect(done.waiting).toEqual([]);
    expect(done.steps.map((step: { state: string }) => step.state)).toEqual([
      "completed",
      "completed",
      "completed",
    ]);
    expect(done.steps[1].durationMs).toBeGreaterThan(0);
  });

  it("e2e - loom runs events prints a run's history and exits; --follow re-attaches until the run ends", async () => {
    const runId = await submit("pay", { to: "c" });
    expect(await stack.reaches(runId, TaskState.INPUT_REQUIRED)).toBe("input-required");

    const history = await cli(["runs", "events", runId]);
    expect(history.code, history.stderr).toBe(0);
    expect(history.stdout).toContain("step debit: calling ledger.append");
    expect(history.stdout).toMatch(/input-required\s+Pay c 5\?/);
    expect(history.stdout).not.toContain("completed");

    const asJson = await cli(["runs", "events", runId, "--json"]);
    expect(asJson.code, asJson.stderr).toBe(0);
    const events = asJson.stdout
      .trim()
      .split("\n")
      .map((line) => RunEventSchema.parse(JSON.parse(line)));
    expect(events.at(-1)).toMatchObject({ statusUpdate: { status: { state: TaskState.INPUT_REQUIRED } } });

    // Re-attach, then let the run go on: the follower sees the past, then the end, and exits 0.
    const following = cli(["runs", "events", runId, "--follow"]);
    await new Promise((resolve) => setTimeout(resolve, 2_000));
    const answered = await cli(["runs", "input", runId, "--approve"], ops);
    expect(answered.code, answered.stderr).toBe(0);
    const followed = await following;
    expect(followed.code, followed.stderr).toBe(0);
    expect(followed.stdout).toContain("step debit: calling ledger.append");
    expect(followed.stdout).toContain("approved by ops");
    expect(followed.stdout).toContain("step credit: calling ledger.append");
    expect(followed.stdout).toMatch(/completed\s+run completed/);
    expect(followed.stdout).toContain('"credit":');

    const failedRun = await cli(["submit", stack.workflow("pay-bad"), "--input", '{"note":"x"}', "--watch"]);
    expect(failedRun.code).toBe(1);
    const failedId = failedRun.stdout.split("\n")[0]?.replace("run ", "") ?? "";
    const followedFailed = await cli(["runs", "events", failedId, "--follow"]);
    expect(followedFailed.code).toBe(1);
    expect(followedFailed.stdout).toContain("(EXPRESSION_FAILED)");
  });

  it("e2e - loom runs rerun of a canceled run reuses what ran before where it stopped: no tool called twice", async () => {
    const before = await stack.ledger.invocations();
    const runId = await submit("pay", { to: "d" });
    expect(await stack.reaches(runId, TaskState.INPUT_REQUIRED)).toBe("input-required");
    const canceled = await cli(["runs", "cancel", runId]);
    expect(canceled.code, canceled.stderr).toBe(0);
    expect(await stack.ledger.invocations()).toBe(before + 1);

    const rerun = await cli(["runs", "rerun", runId]);
    expect(rerun.code, rerun.stderr).toBe(0);
    const [runLine, whatLine] = rerun.stdout.trim().split("\n");
    const newId = runLine?.replace("run ", "") ?? "";
    expect(newId).not.toBe(runId);
    expect(whatLine).toBe(`rerun of ${runId} from step approve; reused: debit`);
    expect(await stack.reaches(newId, TaskState.INPUT_REQUIRED)).toBe("input-required");

    const shown = await cli(["runs", "get", newId]);
    expect(shown.code, shown.stderr).toBe(0);
    expect(shown.stdout).toContain(`rerun of  ${runId} from step approve (reused: debit)`);
    expect(shown.stdout).toMatch(
      new RegExp(`\\ndebit\\s+call ledger\\.append\\s+completed \\(reused from ${runId}\\)`),
    );
    const original = await cli(["runs", "get", runId]);
    expect(original.stdout).toContain(`rerun as  ${newId}`);
    expect(original.stdout).toMatch(/\napprove\s+approval\s+canceled/);

    // The same links in the A2A tasks' metadata.
    const task = async (id: string) => {
      const response = await fetch(`${stack.a2aUrl}/a2a/rest/tasks/${id}`, {
        headers: { "A2A-Version": "1.0", authorization: `Bearer ${ann}` },
      });
      expect(response.status).toBe(200);
      return ((await response.json()) as { metadata: Record<string, unknown> }).metadata;
    };
    expect((await task(runId)).rerunAs).toEqual([newId]);
    expect((await task(newId)).rerunOf).toEqual({ runId, from: "approve", reused: ["debit"] });

    const answered = await cli(["runs", "input", newId, "--approve"], ops);
    expect(answered.code, answered.stderr).toBe(0);
    const followed = await cli(["runs", "events", newId, "--follow", "--json"]);
    expect(followed.code, followed.stderr).toBe(0);
    // The debit ran once, in the first run; the credit once, in the rerun; no key was called twice.
    expect(await stack.ledger.invocations()).toBe(before + 2);
    const perKey = await stack.ledger.callsPerKey();
    expect([...perKey.entries()].filter(([key]) => key.startsWith(runId) || key.startsWith(newId))).toEqual([
      [expect.stringMatching(new RegExp(`^${runId}:debit`)), 1],
      [expect.stringMatching(new RegExp(`^${newId}:credit`)), 1],
    ]);
  });

  it("e2e - loom runs rerun --from an earlier step runs it and every later step again; by default only what failed", async () => {
    const failed = await cli(["submit", stack.workflow("pay-bad"), "--input", '{"note":"x"}', "--watch"]);
    expect(failed.code).toBe(1);
    const runId = failed.stdout.split("\n")[0]?.replace("run ", "") ?? "";
    const shown = await cli(["runs", "get", runId]);
    expect(shown.stdout).toMatch(/\ncredit\s+call ledger\.append\s+failed\s+1\s+.*EXPRESSION_FAILED: /);
    const before = await stack.ledger.invocations();

    const again = await cli(["runs", "rerun", runId, "--watch"]);
    expect(again.code).toBe(1);
    expect(again.stdout).toContain(`rerun of ${runId} from step credit; reused: debit`);
    expect(again.stdout).toContain("(EXPRESSION_FAILED)");
    expect(await stack.ledger.invocations()).toBe(before);

    const fromStart = await cli(["runs", "rerun", runId, "--from", "debit", "--watch", "--json"]);
    expect(fromStart.code).toBe(1);
    const reply = JSON.parse(fromStart.stdout.split("\n")[0] ?? "");
    expect(reply.rerunOf).toEqual({ runId, from: "debit", reused: [] });
    expect(await stack.ledger.invocations()).toBe(before + 1);
    const linked = jsonOf(await cli(["runs", "get", runId, "--json"]));
    expect(linked.rerunAs).toHaveLength(2);
    expect(linked.rerunAs).toContain(reply.runId);
  });

  it("e2e - loom runs rerun refuses what cannot be rerun with a typed error that says what can", async () => {
    const completed = await submit("count", {});
    expect(await stack.reaches(completed, TaskState.COMPLETED)).toBe("completed");
    const ofCompleted = await cli(["runs", "rerun", completed]);
    expect(ofCompleted.code).toBe(1);
    expect(ofCompleted.stderr).toContain("error RUN_NOT_RERUNNABLE:");
    expect(ofCompleted.stderr).toContain("only a failed or canceled run can be rerun, and it completed");

    const waiting = await submit("pay", { to: "e" });
    expect(await stack.reaches(waiting, TaskState.INPUT_REQUIRED)).toBe("input-required");
    const ofWaiting = await cli(["runs", "rerun", waiting]);
    expect(ofWaiting.code).toBe(1);
    expect(ofWaiting.stderr).toContain(
      `it is still going; wait for it to end or cancel it (loom runs cancel ${waiting})`,
    );
    expect((await cli(["runs", "cancel", waiting])).code).toBe(0);

    const typo = await cli(["runs", "rerun", waiting, "--from", "aprove"]);
    expect(typo.code).toBe(1);
    expect(typo.stderr).toContain(
      'error STEP_NOT_FOUND: workflow pay v1 has no step aprove (did you mean "approve"?)',
    );
    const tooLate = await cli(["runs", "rerun", waiting, "--from", "credit"]);
    expect(tooLate.code).toBe(1);
    expect(tooLate.stderr).toContain(`error INVALID_INPUT: run ${waiting} stopped at step approve`);
    const unknown = await cli(["runs", "rerun", "no-such-run"]);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain("error RUN_NOT_FOUND: no run with id no-such-run");
    // Control: the same run, from where it stopped.
    const control = await cli(["runs", "rerun", waiting, "--from", "approve", "--json"]);
    expect(jsonOf(control).rerunOf).toEqual({ runId: waiting, from: "approve", reused: ["debit"] });
  });
});
