import { randomUUID } from "node:crypto";
import { once } from "node:events";
import { setTimeout as sleep } from "node:timers/promises";
import { jetstream } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { headers } from "@nats-io/transport-node";
import { describe, expect, it } from "vitest";
import { shortStateName, TERMINAL_STATES } from "../../schemas/a2a.ts";
import { RunEventSchema, RunRecordSchema } from "../../schemas/run.ts";
import { Buckets, Headers, Subjects } from "../../schemas/subjects.ts";
import type { ServiceName } from "../../services/cli/stack.ts";
import { createTestLedger } from "../helpers/ledger.ts";
import { type Loom, NatsUser, startLoom, tokenFor } from "../helpers/loom.ts";

const RUNS = 200;
const WAVE = 20;
const WAVE_PAUSE_MS = 400;
const STEPS_PER_RUN = 3;
/** 200 runs through a crash take about 40 s on an idle machine; a loaded one needs more. */
const FAULT_TIMEOUT_MS = 180_000;
const admin = tokenFor("ops", "admin");

/** A stack whose worker serves a private ledger, with short leases and timeouts so crashes heal fast. */
async function startLedgerLoom(serversFile: string): Promise<Loom> {
  return startLoom({
    env: {
      LOOM_MCP_SERVERS: serversFile,
      LOOM_RUN_LEASE_MS: "1500",
      LOOM_STEP_TIMEOUT_MS: "3000",
      LOG_LEVEL: "info",
    },
    tools: ["ledger.append"],
  });
}

/**
 * Submits `count` transfers in waves, so the load lasts long enough for crashes to land in it.
 * Resolves with the run ids at once; the waves go on in the background.
 */
function submitTransfers(loom: Loom, count: number): { runIds: string[]; submitted: Promise<void> } {
  const runIds = Array.from({ length: count }, () => randomUUID());
  const submitted = (async () => {
    const js = jetstream(await loom.connectAs(NatsUser.SUBMITTER));
    for (let start = 0; start < count; start += WAVE) {
      await Promise.all(
        runIds.slice(start, start + WAVE).map((runId, offset) => {
          const h = headers();
          h.set(Headers.AUTHORIZATION, `Bearer ${admin}`);
          const input = { from: `acct-${start + offset}`, to: "treasury", amount: 10 };
          return publishUntilAcked(() =>
            js.publish(Subjects.RUNS_SUBMIT, JSON.stringify({ runId, workflow: "ledger-transfer", input }), {
              msgID: runId,
              headers: h,
              timeout: 5_000,
            }),
          );
        }),
      );
      await sleep(WAVE_PAUSE_MS);
    }
  })();
  return { runIds, submitted };
}

/**
 * What a careful submitter does: a submission without a PubAck (the broker restarted under it) is
 * sent again; the run id is the deduplication key, so it is stored once either way.
 */
async function publishUntilAcked(publish: () => Promise<unknown>): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      await publish();
      return;
    } catch (error) {
      if (attempt >= 10) throw error;
      await sleep(500);
    }
  }
}

/** Counts runs that reached a final state, live, from their events. */
function trackCompletions(loom: Loom): { completed(): number; stop(): void } {
  const done = new Set<string>();
  const subscription = loom.observer.subscribe(Subjects.RUN_EVENTS_ALL, {
    callback: (_error, message) => {
      const event = RunEventSchema.safeParse(message.json());
      if (
        event.success &&
        "statusUpdate" in event.data &&
        TERMINAL_STATES.has(event.data.statusUpdate.status.state)
      ) {
        done.add(event.data.statusUpdate.taskId);
      }
    },
  });
  return { completed: () => done.size, stop: () => subscription.unsubscribe() };
}

/** Counts runs by state (short names); `pending` for runs not yet ended or not yet stored. */
async function runStates(loom: Loom, runIds: string[]): Promise<Record<string, number>> {
  try {
    return await readRunStates(loom, runIds);
  } catch {
    // The broker may be restarting: count everything as pending and look again.
    return { pending: runIds.length };
  }
}

async function readRunStates(loom: Loom, runIds: string[]): Promise<Record<string, number>> {
  const kv = await new Kvm(loom.observer).open(Buckets.RUNS);
  const counts: Record<string, number> = {};
  for (const runId of runIds) {
    const entry = await kv.get(runId);
    const state = entry?.operation === "PUT" ? RunRecordSchema.parse(entry.json()).state : undefined;
    const name = state !== undefined && TERMINAL_STATES.has(state) ? shortStateName(state) : "pending";
    counts[name] = (counts[name] ?? 0) + 1;
  }
  return counts;
}

async function waitForAll(loom: Loom, runIds: string[], timeoutMs: number): Promise<Record<string, number>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const counts = await runStates(loom, runIds);
    if (counts.pending === undefined || Date.now() > deadline) return counts;
    await sleep(500);
  }
}

/** The errors of runs that did not complete, so a failing count says why. */
async function failures(loom: Loom, runIds: string[]): Promise<string[]> {
  const kv = await new Kvm(loom.observer).open(Buckets.RUNS);
  const found: string[] = [];
  for (const runId of runIds) {
    const entry = await kv.get(runId);
    const record = entry?.operation === "PUT" ? RunRecordSchema.parse(entry.json()) : undefined;
    if (record?.error !== undefined) found.push(`${runId}: ${record.error.code} ${record.error.message}`);
  }
  return found;
}

/** Waits until at least `count` runs ended, so the next crash lands in the middle of the load. */
async function endedAtLeast(tracker: { completed(): number }, count: number): Promise<number> {
  const deadline = Date.now() + 60_000;
  while (tracker.completed() < count && Date.now() < deadline) await sleep(20);
  return tracker.completed();
}

async function kill(loom: Loom, name: ServiceName): Promise<void> {
  for (const service of loom.stack.services.filter((candidate) => candidate.name === name)) {
    if (service.process.exitCode !== null || service.process.signalCode !== null) continue;
    const exited = once(service.process, "exit");
    service.process.kill("SIGKILL");
    await exited;
  }
}

/**
 * Runs 200 transfers through `crash` (which returns how far the load had got when it struck),
 * then checks what a user would: every run completed, and the ledger holds each effect once.
 */
async function transfersSurvive(
  label: string,
  crash: (loom: Loom, tracker: { completed(): number }) => Promise<number[]>,
) {
  await using ledger = await createTestLedger();
  await using loom = await startLedgerLoom(ledger.serversFile);
  const tracker = trackCompletions(loom);
  const { runIds, submitted } = submitTransfers(loom, RUNS);
  const progress = await crash(loom, tracker);
  await submitted;
  tracker.stop();
  const states = await waitForAll(loom, runIds, 150_000);
  if (states.completed !== RUNS)
    console.log(`runs that did not complete: ${(await failures(loom, runIds)).join("; ")}`);
  const [entries, invocations] = [await ledger.entries(), await ledger.invocations()];
  console.log(
    `${label} (runs completed when it struck: ${progress.join(", ")}); runs: ${JSON.stringify(states)}; ` +
      `ledger entries: ${entries} (expected ${RUNS * STEPS_PER_RUN}); tool invocations: ${invocations}`,
  );
  expect(states).toEqual({ completed: RUNS });
  expect(progress[0]).toBeGreaterThan(0);
  expect(progress.at(-1)).toBeLessThan(RUNS);
  expect(entries).toBe(RUNS * STEPS_PER_RUN);
}

describe("fault - runs survive processes dying, and every step's effect happens exactly once", () => {
  it(
    "fault - 200 ledger transfers while the orchestrator is SIGKILLed 5 times",
    () =>
      transfersSurvive("orchestrator SIGKILLed 5 times", async (loom, tracker) => {
        const progress: number[] = [];
        for (const threshold of [20, 50, 80, 110, 140]) {
          progress.push(await endedAtLeast(tracker, threshold));
          await kill(loom, "orchestrator");
          await loom.stack.restart("orchestrator");
        }
        return progress;
      }),
    FAULT_TIMEOUT_MS,
  );

  it(
    "fault - 200 ledger transfers while the mcp-worker is SIGKILLed mid-call 3 times",
    () =>
      transfersSurvive("mcp-worker SIGKILLed mid-call 3 times", async (loom, tracker) => {
        const progress: number[] = [];
        for (const threshold of [30, 80, 130]) {
          progress.push(await endedAtLeast(tracker, threshold));
          await kill(loom, "mcp-worker");
          await loom.stack.restart("mcp-worker");
        }
        return progress;
      }),
    FAULT_TIMEOUT_MS,
  );

  it(
    "fault - 200 ledger transfers while the nats-server restarts (store kept)",
    () =>
      transfersSurvive("nats-server restarted", async (loom, tracker) => {
        const before = await endedAtLeast(tracker, 60);
        await loom.nats.restart();
        return [before];
      }),
    FAULT_TIMEOUT_MS,
  );

  it(
    "fault - two orchestrator replicas take over a dead one's runs at once",
    () =>
      transfersSurvive(
        "orchestrator SIGKILLed, two fresh replicas recover its runs",
        async (loom, tracker) => {
          const before = await endedAtLeast(tracker, 60);
          await kill(loom, "orchestrator");
          loom.stack.add("orchestrator");
          loom.stack.add("orchestrator");
          return [before];
        },
      ),
    FAULT_TIMEOUT_MS,
  );
});
