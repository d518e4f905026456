import { randomUUID } from "node:crypto";
import { jetstream } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TaskState } from "../../schemas/a2a.ts";
import { RunGetContract } from "../../schemas/contracts.ts";
import { Headers, Subjects } from "../../schemas/subjects.ts";
import { publishSubmission, request } from "../../services/kit/index.ts";
import { AttackClass, attack, control } from "../helpers/attack-tally.ts";
import { type LedgerRuns, startLedgerRuns } from "../helpers/ledger-runs.ts";
import { NatsUser } from "../helpers/loom.ts";
import { signJwt, tokenFor, validClaims } from "../helpers/tokens.ts";

const owner = tokenFor("ann", "analyst");
const stranger = tokenFor("sam", "analyst");
const manager = tokenFor("mia", "manager", "analyst");
const admin = tokenFor("ops", "admin");
const now = () => Math.floor(Date.now() / 1000);

/** The callers an outsider tries with: none may rerun, follow or read the timeline of another's run. */
const intruders: Array<[string, () => string | undefined]> = [
  ["a garbage token", () => "x"],
  ["no token", () => undefined],
  [
    "an expired token of the owner",
    () => signJwt(validClaims("ann", ["analyst"], { exp: now() - 600, iat: now() - 4000 })),
  ],
  ["another analyst's valid token", () => stranger],
  ["a manager's valid token (may answer approvals, not read or rerun)", () => manager],
];
/** A refused token exits 2; a valid one for a run it may not see is told, as for no run, exit 1. */
const REFUSAL = /error (UNAUTHENTICATED|RUN_NOT_FOUND):/;

/**
 * A run's timeline (`runs get`), its events followed live (`runs events --follow`) and its rerun
 * (`runs rerun`, and a rerun submission sent straight to `loom.v1.runs.submit`) are the owner's
 * and admins' alone; each attack has a control that must work, and the ledger shows that a refused
 * rerun called no tool.
 */
describe("security - tenant isolation: another user's rerun, event follow or timeline is refused", () => {
  let stack: LedgerRuns;
  let failed = "";
  let waiting = "";
  let submitter: NatsConnection;
  const cli = (args: string[], token: string | undefined) =>
    stack.loom.cli(args, { ...(token === undefined ? {} : { token }), timeoutMs: 45_000 });

  /** The command failed with a refusal, and printed nothing of the run. */
  const refuses = async (args: string[], token: string | undefined) => {
    const result = await cli(args, token);
    const code = result.stderr.includes("UNAUTHENTICATED") ? 2 : 1;
    return result.code === code && REFUSAL.test(result.stderr) && !/debit|ledger|Pay/.test(result.stdout);
  };

  /** The runs that name `runId` as the one they rerun, as the owner reads it. */
  const rerunsOf = async (runId: string): Promise<string[]> => {
    const nc = await stack.loom.connectAs(NatsUser.SUBMITTER);
    const view = await request(
      nc,
      Subjects.RUNS_GET,
      RunGetContract,
      { runId },
      {
        timeoutMs: 10_000,
        headers: { [Headers.AUTHORIZATION]: `Bearer ${owner}` },
      },
    );
    return view.rerunAs ?? [];
  };

  beforeAll(async () => {
    stack = await startLedgerRuns();
    submitter = await stack.loom.connectAs(NatsUser.SUBMITTER);
    const bad = await cli(["submit", stack.workflow("pay-bad"), "--input", '{"note":"x"}', "--watch"], owner);
    expect(bad.code, bad.stderr).toBe(1);
    failed = bad.stdout.split("\n")[0]?.replace("run ", "") ?? "";
    const submitted = await cli(["submit", stack.workflow("pay"), "--input", '{"to":"b"}'], owner);
    expect(submitted.code, submitted.stderr).toBe(0);
    waiting = submitted.stdout.trim();
    expect(await stack.reaches(waiting, TaskState.INPUT_REQUIRED)).toBe("input-required");
  }, 180_000);
  afterAll(async () => {
    await stack?.[Symbol.asyncDispose]();
  });

  it("tenant isolation - runs rerun, runs events (--follow) and runs get of another's run, by every intruder", {
    timeout: 600_000,
  }, async () => {
    const calls = await stack.ledger.invocations();
    // The intruders are independent of each other: each tries its commands in a lane of its own.
    await Promise.all(
      intruders.map(async ([who, token]) => {
        await attack(AttackClass.TENANT_ISOLATION, `cli runs rerun with ${who}`, () =>
          refuses(["runs", "rerun", failed], token()),
        );
        await attack(AttackClass.TENANT_ISOLATION, `cli runs rerun --from the first step with ${who}`, () =>
          refuses(["runs", "rerun", failed, "--from", "debit", "--watch"], token()),
        );
        await attack(AttackClass.TENANT_ISOLATION, `cli runs events --follow with ${who}`, () =>
          refuses(["runs", "events", waiting, "--follow"], token()),
        );
        await attack(AttackClass.TENANT_ISOLATION, `cli runs events --json with ${who}`, () =>
          refuses(["runs", "events", waiting, "--json"], token()),
        );
        await attack(AttackClass.TENANT_ISOLATION, `cli runs get (the timeline) with ${who}`, () =>
          refuses(["runs", "get", waiting, "--json"], token()),
        );
      }),
    );
    await attack(AttackClass.TENANT_ISOLATION, "no refused rerun called a tool or was linked", async () => {
      return (await stack.ledger.invocations()) === calls && (await rerunsOf(failed)).length === 0;
    });

    await control("the owner follows, reads the timeline of and reruns its own runs", async () => {
      const [events, timeline, rerun] = await Promise.all([
        cli(["runs", "events", waiting, "--json"], owner),
        cli(["runs", "get", waiting, "--json"], owner),
        cli(["runs", "rerun", failed, "--json"], owner),
      ]);
      const steps = JSON.parse(timeline.stdout).steps as Array<{ stepId: string }>;
      const newId = JSON.parse(rerun.stdout).runId as string;
      // The link is written when the new run is admitted, just after the rerun is answered.
      await stack.reaches(newId, TaskState.FAILED);
      return (
        events.code === 0 &&
        events.stdout.includes("Pay b 5?") &&
        steps.map((step) => step.stepId).join(",") === "debit,approve,credit" &&
        rerun.code === 0 &&
        (await rerunsOf(failed)).includes(newId)
      );
    });
    await control("an admin reruns anyone's run; the new run is the admin's", async () => {
      const rerun = await cli(["runs", "rerun", failed, "--json"], admin);
      const newId = JSON.parse(rerun.stdout).runId as string;
      await stack.reaches(newId, TaskState.FAILED);
      const view = JSON.parse((await cli(["runs", "get", newId, "--json"], admin)).stdout);
      return rerun.code === 0 && view.startedBy === "ops" && view.rerunOf.runId === failed;
    });
  });

  it("tenant isolation - a rerun submission sent straight to loom.v1.runs.submit is decided as runs.rerun too", {
    timeout: 120_000,
  }, async () => {
    const js = jetstream(submitter);
    const before = await stack.ledger.invocations();
    const linked = (await rerunsOf(failed)).length;
    await Promise.all(
      intruders.map(([who, token]) => {
        const runId = randomUUID();
        return attack(
          AttackClass.TENANT_ISOLATION,
          `a rerun submission on the public subject with ${who}`,
          async () => {
            await publishSubmission(
              js,
              { runId, workflow: "pay-bad", input: {}, rerunOf: { runId: failed, from: "debit" } },
              token() === undefined ? undefined : `Bearer ${token()}`,
            );
            // Refused (a bad token) or told no such run (a valid token for a run it may not see): the
            // new run ends without a step; the ledger check below shows no tool ran.
            const state = await stack.reaches(runId, TaskState.REJECTED);
            return state === "rejected" || state === "failed";
          },
        );
      }),
    );
    await attack(
      AttackClass.TENANT_ISOLATION,
      "no refused rerun submission called a tool or was linked",
      async () => {
        return (await stack.ledger.invocations()) === before && (await rerunsOf(failed)).length === linked;
      },
    );
    await control("the owner's own rerun submission on the public subject runs", async () => {
      const runId = randomUUID();
      await publishSubmission(
        js,
        { runId, workflow: "pay-bad", input: {}, rerunOf: { runId: failed, from: "debit" } },
        `Bearer ${owner}`,
      );
      const state = await stack.reaches(runId, TaskState.FAILED);
      return (
        state === "failed" &&
        (await stack.ledger.invocations()) === before + 1 &&
        (await rerunsOf(failed)).includes(runId)
      );
    });
  });
});
