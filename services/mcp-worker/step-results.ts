import { setTimeout as sleep } from "node:timers/promises";
import type { KV } from "@nats-io/kv";
import type { Task } from "../../schemas/a2a.ts";
import { type StepRecord, StepRecordSchema, stepRecordKey } from "../../schemas/steps.ts";
import type { StepGrant } from "../kit/grant-check.ts";
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

/** The step attempt a tool task is for: its runId, stepId and attempt number (1, 2, …). */
export interface StepAttempt {
  runId: string;
  stepId: string;
  attempt: number;
}

/**
 * Told when this worker is about to call a tool although an earlier claim on the step lapsed
 * without an outcome: that claim's worker may have died mid-call, after the tool acted, so a tool
 * without an idempotency key can see this call twice. `previous` names the lapsed claim's worker.
 */
export type ReinvocationListener = (key: string, previous: string) => Promise<void>;

export interface StepClaimOptions {
  /** How long the claim holds without an outcome before another worker may take it over. */
  leaseMs: number;
  /** The grant the attempt runs on: its use is recorded in the claim, in the same write. */
  grant: StepGrant;
  /** Told when the attempt is answered with an outcome stored before: nothing runs for it. */
  replayed: () => void;
}

/**
 * Effectively-once step attempts over KV `loom_steps`: the first worker to claim a key runs the
 * work and stores its outcome; a later request for the same key gets that outcome. A claim whose
 * holder died (no outcome within its lease) is taken over with compare-and-set. A later attempt
 * of the same step first looks at the earlier ones: it returns an earlier attempt's stored
 * success, and waits while an earlier claim is live, so an attempt re-sent because its reply was
 * late never calls the tool beside the first one. The claim also records the grant's use: a grant
 * already named on a claim of its attempt (it took over a lapsed one) is refused, never run again.
 */
export class StepResults {
  readonly #kv: KV;
  readonly #worker: string;
  readonly #log: Logger;
  readonly #onReinvocation: ReinvocationListener;

  constructor(kv: KV, worker: string, log: Logger, onReinvocation: ReinvocationListener) {
    this.#kv = kv;
    this.#worker = worker;
    this.#log = log;
    this.#onReinvocation = onReinvocation;
  }

  async once(step: StepAttempt, options: StepClaimOptions, work: () => Promise<Task>): Promise<Task> {
    let lapsed: string | undefined;
    for (let attempt = 1; attempt < step.attempt; attempt++) {
      const key = stepRecordKey(step.runId, step.stepId, attempt);
      const earlier = await this.#settled(key);
      if (earlier.record?.status === "succeeded") {
        this.#log.info(
          { step_key: key, attempt: step.attempt },
          "an earlier attempt succeeded; its outcome is replayed",
        );
        options.replayed();
        return earlier.record.task;
      }
      lapsed = earlier.lapsedWorker ?? lapsed;
    }
    const key = stepRecordKey(step.runId, step.stepId, step.attempt);
    // An attempt is almost always new: its claim (a create, first writer wins) is tried before any
    // read, and the record is read only once the create finds one there.
    let unread = true;
    for (;;) {
      const entry = unread ? null : await readEntry(this.#kv, key);
      unread = false;
      const existing =
        entry === null ? undefined : parsePayload(StepRecordSchema, entry.value, `step ${key}`);
      if (existing !== undefined && existing.status !== "running") {
        options.replayed();
        return replay(existing);
      }
      if (existing !== undefined && Date.parse(existing.claimedAt) + existing.leaseMs > Date.now()) {
        await sleep(POLL_MS);
        continue;
      }
      const used = existing?.status === "running" ? existing.grants : [];
      if (used.includes(options.grant.id)) throw await options.grant.refuseReuse();
      const claim: StepRecord = {
        status: "running",
        worker: this.#worker,
        claimedAt: new Date().toISOString(),
        leaseMs: options.leaseMs,
        grants: [...used, options.grant.id],
      };
      const claimed = await this.#write(key, claim, entry === null ? undefined : entry.revision);
      if (claimed === undefined) continue;
      const previous = existing?.status === "running" ? existing.worker : lapsed;
      if (previous !== undefined) {
        this.#log.warn(
          { step_key: key, previous },
          "a step claim lapsed without an outcome; calling the tool again",
        );
        await this.#onReinvocation(key, previous);
      }
      return this.#run(key, claimed, work);
    }
  }

  /** An attempt's record once no live claim can still store an outcome; notes a claim that lapsed without one. */
  async #settled(key: string): Promise<{ record?: StepRecord; lapsedWorker?: string }> {
    for (;;) {
      const entry = await readEntry(this.#kv, key);
      if (entry === null) return {};
      const record = parsePayload(StepRecordSchema, entry.value, `step ${key}`);
      if (record.status !== "running") return { record };
      if (Date.parse(record.claimedAt) + record.leaseMs <= Date.now()) return { lapsedWorker: record.worker };
      await sleep(POLL_MS);
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
