import { describe, expect, it } from "vitest";
import { TaskState } from "../../schemas/a2a.ts";
import type { RunRecord } from "../../schemas/run.ts";
import { RunOwnershipLostError, type StoredRun } from "../../services/orchestrator/run-store.ts";
import { RunWriter } from "../../services/orchestrator/run-writer.ts";

const record = (updatedAt: string): RunRecord => ({
  runId: "r-1",
  contextId: "ctx",
  workflowId: "wf",
  input: {},
  state: TaskState.WORKING,
  snapshot: {},
  pending: [],
  createdAt: "2026-01-01T00:00:00.000Z",
  updatedAt,
});

/** A run store whose compare-and-set writes wait until released, one revision each. */
function heldStore(options: { failAt?: number } = {}) {
  const written: Array<{ updatedAt: string; revision: number }> = [];
  const releases: Array<() => void> = [];
  let inFlight = 0;
  let mostInFlight = 0;
  return {
    written,
    releaseAll: () => {
      for (const release of releases.splice(0)) release();
    },
    get mostInFlight() {
      return mostInFlight;
    },
    async update(stored: StoredRun, next: RunRecord): Promise<StoredRun> {
      inFlight += 1;
      mostInFlight = Math.max(mostInFlight, inFlight);
      await new Promise<void>((resolve) => releases.push(resolve));
      inFlight -= 1;
      if (stored.revision + 1 === options.failAt) throw new RunOwnershipLostError(next.runId);
      written.push({ updatedAt: next.updatedAt, revision: stored.revision });
      return { record: next, revision: stored.revision + 1 };
    },
  };
}

const settle = () => new Promise((resolve) => setImmediate(resolve));

describe("run writer - the lease holder's pipelined writes", () => {
  it("run writer - one write in flight; the newest waiting record replaces the older, each on the last revision", async () => {
    const store = heldStore();
    const writer = new RunWriter(store, { record: record("t0"), revision: 1 }, () => {
      throw new Error("no failure expected");
    });
    const first = writer.write(record("t1"));
    const second = writer.write(record("t2"));
    const third = writer.write(record("t3"));
    await settle();
    expect(store.mostInFlight).toBe(1);
    store.releaseAll();
    await first;
    await settle();
    store.releaseAll();
    await Promise.all([second, third, writer.flushed()]);
    expect(store.written).toEqual([
      { updatedAt: "t1", revision: 1 },
      { updatedAt: "t3", revision: 2 },
    ]);
  });

  it("run writer - a failed write fails the writes queued behind it and every later one, and is reported once", async () => {
    const store = heldStore({ failAt: 2 });
    const failures: unknown[] = [];
    const writer = new RunWriter(store, { record: record("t0"), revision: 1 }, (error) =>
      failures.push(error),
    );
    const first = writer.write(record("t1"));
    const queued = writer.write(record("t2"));
    await settle();
    store.releaseAll();
    await expect(first).rejects.toBeInstanceOf(RunOwnershipLostError);
    await expect(queued).rejects.toBeInstanceOf(RunOwnershipLostError);
    await expect(writer.write(record("t3"))).rejects.toBeInstanceOf(RunOwnershipLostError);
    await expect(writer.flushed()).rejects.toBeInstanceOf(RunOwnershipLostError);
    expect(failures).toHaveLength(1);
    expect(store.written).toEqual([]);
  });

  it("run writer - control: flushed resolves at once with nothing written, and after the last write otherwise", async () => {
    const store = heldStore();
    const writer = new RunWriter(store, { record: record("t0"), revision: 1 }, () => undefined);
    await writer.flushed();
    void writer.write(record("t1"));
    let flushed = false;
    const flushing = writer.flushed().then(() => {
      flushed = true;
    });
    await settle();
    expect(flushed).toBe(false);
    store.releaseAll();
    await flushing;
    expect(store.written.map((write) => write.updatedAt)).toEqual(["t1"]);
  });
});
