import { setTimeout as sleep } from "node:timers/promises";
import { Kvm } from "@nats-io/kv";
import { describe, expect, it } from "vitest";
import { Buckets } from "../../schemas/subjects.ts";
import { ServiceName } from "../../services/cli/stack.ts";
import { STEPS_PER_TRANSFER, settle, trackEnds, transfersInFlight } from "../helpers/fault-load.ts";
import { createTestLedger } from "../helpers/ledger.ts";
import { NatsUser, startLoom } from "../helpers/loom.ts";
import { OBSERVER } from "../helpers/nats-users.ts";

const RUNS = 6;
const FORGOTTEN = 3;
const POLICY_AWAY_MS = 2_000;

describe("fault - the run store regresses under acknowledged runs", () => {
  it("fault - runs whose records the store lost are found in the submissions stream and driven to an end once, also when policy returns after the broker", async () => {
    await using ledger = await createTestLedger();
    await using loom = await startLoom({
      env: { LOOM_MCP_SERVERS: ledger.serversFile, LOOM_RUN_LEASE_MS: "1500", LOG_LEVEL: "info" },
      tools: ["ledger.append"],
    });
    // Through the broker's restart: the observer watches and reads, the submitter submits.
    const observer = await loom.connectAs(OBSERVER, { maxReconnectAttempts: -1 });
    const submitter = await loom.connectAs(NatsUser.SUBMITTER, { maxReconnectAttempts: -1 });
    const tracker = trackEnds(observer);
    const load = transfersInFlight(submitter, tracker, { count: RUNS, inFlight: RUNS });
    await load.done;
    const before = await settle(observer, load.accepted, tracker, ledger, 60_000);
    expect(before.completed).toBe(RUNS);

    // What a broker crash without sync does to acknowledged writes: the records are gone, the
    // submissions (and the steps' stored outcomes) survive. The broker restart is when Loom looks.
    // Only the orchestrator's user may write run records.
    const runsKv = await new Kvm(await loom.connectAs(NatsUser.ORCHESTRATOR)).open(Buckets.RUNS);
    const forgotten = load.accepted.slice(0, FORGOTTEN);
    for (const runId of forgotten) await runsKv.purge(runId);
    // Control: the purge took.
    for (const runId of forgotten) expect((await runsKv.get(runId))?.operation).toBe("PURGE");
    // Policy comes back after the orchestrator, so the first re-admissions are refused as
    // retryable (no policy answers): they must be tried again, not dropped.
    const policy = loom.stack.services.find((service) => service.name === ServiceName.ACP_POLICY);
    policy?.process.kill("SIGKILL");
    await loom.nats.kill();
    await sleep(300);
    await loom.nats.restart();
    await sleep(POLICY_AWAY_MS);
    await loom.stack.restart(ServiceName.ACP_POLICY);

    const after = await settle(observer, load.accepted, trackEnds(observer), ledger, 60_000);
    console.log(
      `store regression: ${JSON.stringify({ ...after, failures: after.failures.slice(0, 5), forgotten: FORGOTTEN })}`,
    );
    expect({
      completed: after.completed,
      lost: after.lost,
      stuck: after.stuck,
      doubled: after.doubled,
    }).toEqual({
      completed: RUNS,
      lost: 0,
      stuck: 0,
      doubled: 0,
    });
    // Re-driving replays each step's stored outcome: no tool is called again.
    expect(await ledger.invocations()).toBe(RUNS * STEPS_PER_TRANSFER);
  }, 180_000);
});
