import { randomUUID } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { jetstream } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { headers, type NatsConnection } from "@nats-io/transport-node";
import { shortStateName, TaskState, TERMINAL_STATES } from "../../schemas/a2a.ts";
import { RunEventSchema, type RunRecord, RunRecordSchema } from "../../schemas/run.ts";
import { Buckets, Headers, Subjects } from "../../schemas/subjects.ts";
import type { TestLedger } from "./ledger.ts";
import { tokenFor } from "./tokens.ts";

/** Side effects per `ledger-transfer` run: debit, credit, fee. */
export const STEPS_PER_TRANSFER = 3;
const admin = tokenFor("ops", "admin");

/** Runs that reached a final state, as their events said, live. */
export interface EndTracker {
  /** How many runs ended so far. */
  ended(): number;
  /** Runs whose "completed" event was seen: a store that forgets one of them lost an acknowledged write. */
  readonly completed: ReadonlySet<string>;
  /** Resolves once the run's final event is seen. */
  endOf(runId: string): Promise<void>;
  stop(): void;
}

export function trackEnds(nc: NatsConnection): EndTracker {
  const ended = new Set<string>();
  const completed = new Set<string>();
  const waiters = new Map<string, () => void>();
  const subscription = nc.subscribe(Subjects.RUN_EVENTS_ALL, {
    callback: (_error, message) => {
      const event = RunEventSchema.safeParse(message.json());
      if (!event.success || !("statusUpdate" in event.data)) return;
      const { taskId, status } = event.data.statusUpdate;
      if (!TERMINAL_STATES.has(status.state)) return;
      ended.add(taskId);
      if (status.state === TaskState.COMPLETED) completed.add(taskId);
      waiters.get(taskId)?.();
    },
  });
  return {
    ended: () => ended.size,
    completed,
    endOf: (runId) =>
      ended.has(runId) ? Promise.resolve() : new Promise((resolve) => waiters.set(runId, () => resolve())),
    stop: () => subscription.unsubscribe(),
  };
}

/**
 * What a careful submitter does: a submission without a PubAck (the broker restarted under it) is
 * sent again; the run id is the deduplication key, so it is stored once either way. Resolves once
 * the submission is acknowledged, which is when Loom has accepted the run.
 */
export async function submitTransfer(nc: NatsConnection, runId: string, index: number): Promise<void> {
  const js = jetstream(nc);
  const h = headers();
  h.set(Headers.AUTHORIZATION, `Bearer ${admin}`);
  const input = { from: `acct-${index}`, to: "treasury", amount: 10 };
  const body = JSON.stringify({ runId, workflow: "ledger-transfer", input });
  for (let attempt = 1; ; attempt++) {
    try {
      await js.publish(Subjects.RUNS_SUBMIT, body, { msgID: runId, headers: h, timeout: 5_000 });
      return;
    } catch (error) {
      if (attempt >= 30) throw error;
      await sleep(500);
    }
  }
}

/**
 * Keeps `inFlight` transfers going until `count` were submitted or `stop` is called: each lane
 * submits one, waits for its end (at most `endTimeoutMs`, so a lost run does not stall the load)
 * and submits the next. `accepted` lists the runs whose submission was acknowledged. After `stop`
 * no lane waits for an end any more: `settle` reads how the runs ended from the store.
 */
export function transfersInFlight(
  nc: NatsConnection,
  tracker: EndTracker,
  options: { count: number; inFlight: number; endTimeoutMs?: number },
): { accepted: string[]; done: Promise<void>; stop(): void } {
  const accepted: string[] = [];
  let next = 0;
  const stopping = new AbortController();
  const lane = async () => {
    while (!stopping.signal.aborted && next < options.count) {
      const index = next++;
      const runId = randomUUID();
      await submitTransfer(nc, runId, index);
      accepted.push(runId);
      await Promise.race([
        tracker.endOf(runId),
        sleep(options.endTimeoutMs ?? 60_000, undefined, { signal: stopping.signal }).catch(
          (error: unknown) => {
            if (!stopping.signal.aborted) throw error;
          },
        ),
      ]);
    }
  };
  return {
    accepted,
    done: Promise.all(Array.from({ length: options.inFlight }, lane)).then(() => undefined),
    stop: () => stopping.abort(),
  };
}

/** Every run's record as the store holds it now, undefined where it has none; retried while the broker is away. */
async function records(nc: NatsConnection, runIds: string[]): Promise<Map<string, RunRecord | undefined>> {
  for (let attempt = 1; ; attempt++) {
    try {
      const kv = await new Kvm(nc).open(Buckets.RUNS);
      const found = new Map<string, RunRecord | undefined>();
      for (const runId of runIds) {
        const entry = await kv.get(runId);
        found.set(runId, entry?.operation === "PUT" ? RunRecordSchema.parse(entry.json()) : undefined);
      }
      return found;
    } catch (error) {
      if (attempt >= 30) throw error;
      await sleep(1_000);
    }
  }
}

/** What a fault test reports and asserts on. */
export interface LoadFigures {
  runs: number;
  completed: number;
  /** Ended otherwise, with the codes they ended with. */
  failed: number;
  /** Accepted but without a record at the end, or seen completed and then forgotten by the store. */
  lost: number;
  /** Stored, not lost, but not ended by the deadline. */
  stuck: number;
  /** Ledger effects beyond one per step: a step whose effect was applied twice. */
  doubled: number;
  /** Tool calls beyond one per step (the idempotency key kept their effect single). */
  reinvoked: number;
  failures: string[];
}

/**
 * Waits up to `timeoutMs` for every run to end, then counts. A run is lost when the store has no
 * record of it, or when its "completed" was announced and the store no longer says so.
 */
export async function settle(
  nc: NatsConnection,
  runIds: string[],
  tracker: EndTracker,
  ledger: TestLedger,
  timeoutMs: number,
): Promise<LoadFigures> {
  const deadline = Date.now() + timeoutMs;
  let found = await records(nc, runIds);
  const unsettled = () =>
    [...found.values()].some((record) => record === undefined || !TERMINAL_STATES.has(record.state));
  while (unsettled() && Date.now() < deadline) {
    await sleep(1_000);
    found = await records(nc, runIds);
  }
  const figures: LoadFigures = {
    runs: runIds.length,
    completed: 0,
    failed: 0,
    lost: 0,
    stuck: 0,
    doubled: 0,
    reinvoked: 0,
    failures: [],
  };
  for (const [runId, record] of found) {
    if (record === undefined || (tracker.completed.has(runId) && record.state !== TaskState.COMPLETED)) {
      figures.lost++;
      figures.failures.push(
        `${runId}: lost (${record === undefined ? "no record" : shortStateName(record.state)})`,
      );
    } else if (record.state === TaskState.COMPLETED) figures.completed++;
    else if (TERMINAL_STATES.has(record.state)) {
      figures.failed++;
      figures.failures.push(
        `${runId}: ${shortStateName(record.state)} ${record.error?.code} ${record.error?.message}`,
      );
    } else {
      figures.stuck++;
      figures.failures.push(`${runId}: stuck in ${shortStateName(record.state)}`);
    }
  }
  const calls = await ledger.callsPerKey();
  const expectedSteps = runIds.length * STEPS_PER_TRANSFER;
  figures.doubled = Math.max(0, (await ledger.entries()) - expectedSteps);
  figures.reinvoked = [...calls.values()].reduce((sum, count) => sum + count - 1, 0);
  return figures;
}

export function describeFigures(
  label: string,
  figures: LoadFigures,
  extra: Record<string, unknown> = {},
): string {
  const { failures, ...counts } = figures;
  const shown = failures.slice(0, 10).join("; ");
  return `${label}: ${JSON.stringify({ ...counts, ...extra })}${shown === "" ? "" : ` — ${shown}`}`;
}
