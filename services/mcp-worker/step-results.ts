import { setTimeout as sleep } from "node:timers/promises";
import type { KV } from "@nats-io/kv";
import type { Task } from "../../schemas/a2a.ts";
import { type StepRecord, StepRecordSchema } from "../../schemas/steps.ts";
import {
  casWrite,
  encodePayload,
  type Logger,
  LoomError,
  parsePayload,
  readEntry,
  toWireError,
} from "../kit/index.ts";

/** How often a worker waiting on another's claim looks for its outcome. */
const POLL_MS = 100;

/**
 * Effectively-once step attempts over KV `loom_steps`: the first worker to claim a key runs the
 * work and stores its outcome; a later request for the same key gets that outcome. A claim whose
 * holder died (no outcome within its lease) is taken over with compare-and-set.
 */
export class StepResults {
  readonly #kv: KV;
  readonly #worker: string;
  readonly #log: Logger;

  constructor(kv: KV, worker: string, log: Logger) {
    this.#kv = kv;
    this.#worker = worker;
    this.#log = log;
  }

  async once(key: string, leaseMs: number, work: () => Promise<Task>): Promise<Task> {
    for (;;) {
      const entry = await readEntry(this.#kv, key);
      const existing =
        entry === null ? undefined : parsePayload(StepRecordSchema, entry.value, `step ${key}`);
      if (existing !== undefined && existing.status !== "running") return replay(existing);
      if (existing !== undefined && Date.parse(existing.claimedAt) + existing.leaseMs > Date.now()) {
        await sleep(POLL_MS);
        continue;
      }
      const claim: StepRecord = {
        status: "running",
        worker: this.#worker,
        claimedAt: new Date().toISOString(),
        leaseMs,
      };
      const claimed = await this.#write(key, claim, entry === null ? undefined : entry.revision);
      if (claimed === undefined) continue;
      if (existing !== undefined)
        this.#log.warn({ step_key: key, previous: existing.worker }, "took over an expired step claim");
      return this.#run(key, claimed, work);
    }
  }

  async #run(key: string, claimRevision: number, work: () => Promise<Task>): Promise<Task> {
    const finishedAt = () => new Date().toISOString();
    let outcome: StepRecord;
    try {
      outcome = { status: "succeeded", task: await work(), finishedAt: finishedAt() };
    } catch (error) {
      outcome = { status: "failed", error: toWireError(error), finishedAt: finishedAt() };
    }
    if ((await this.#write(key, outcome, claimRevision)) === undefined) {
      this.#log.warn({ step_key: key }, "another worker stored this step's outcome first; keeping theirs");
      const stored = await readEntry(this.#kv, key);
      if (stored !== null) {
        const record = parsePayload(StepRecordSchema, stored.value, `step ${key}`);
        if (record.status !== "running") return replay(record);
      }
    }
    return replay(outcome);
  }

  /** create (no revision) or compare-and-set update; undefined when someone else wrote first. */
  #write(key: string, record: StepRecord, revision: number | undefined): Promise<number | undefined> {
    return casWrite(this.#kv, key, encodePayload(StepRecordSchema, record, "step record"), revision);
  }
}

function replay(record: Exclude<StepRecord, { status: "running" }>): Task {
  if (record.status === "succeeded") return record.task;
  throw LoomError.fromWire(record.error);
}
