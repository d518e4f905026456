import { setTimeout as sleep } from "node:timers/promises";
import type { KV } from "@nats-io/kv";
import { type TaskState, TERMINAL_STATES } from "../../schemas/a2a.ts";
import { RunRecordSchema } from "../../schemas/run.ts";

const RunSummarySchema = RunRecordSchema.pick({
  state: true,
  pending: true,
  owner: true,
  leaseUntil: true,
  deadlineAt: true,
});

import { parsePayload, retryBrokerFailures } from "../kit/index.ts";
import { type ExecutionOptions, RunExecution } from "./run-execution.ts";
import type { RunMachineEvent } from "./run-machine.ts";
import { RunOwnershipLostError, type StoredRun } from "./run-store.ts";

/** How often a replica looks for runs nobody drives (a dead replica's, or past their deadline). */
const SWEEP_MS = 1_000;

/** What the sweep needs to know of a run, kept current by a watch on `loom_runs`. */
interface RunSummary {
  pending: number;
  owner: string | undefined;
  leaseUntil: number;
  deadlineAt: number;
}

/**
 * Drives the runs this replica owns and takes over the ones nobody does: a watch on `loom_runs`
 * keeps a summary of every run, and a sweep claims (with compare-and-set) each run that has work
 * pending but no live owner, or whose deadline passed while it waited.
 */
export class RunDriver {
  readonly #options: ExecutionOptions;
  readonly #executions = new Map<string, RunExecution>();
  /** Per run not ended: its summary, or the record bytes of a run this replica drove, read lazily. */
  readonly #summaries = new Map<string, RunSummary | Uint8Array>();
  #stopping = false;
  #sweeping: Promise<void> | undefined;
  /** Ends the wait for the watch's first picture (once it is complete, or on stop). */
  #watchFilled: () => void = () => {};

  constructor(options: ExecutionOptions) {
    this.#options = options;
  }

  get activeRuns(): number {
    return this.#executions.size;
  }

  /** The execution of a run this replica drives now, if it does. */
  driving(runId: string): RunExecution | undefined {
    return this.#executions.get(runId);
  }

  /**
   * Drives a run whose record already names this replica as owner, applying `first` before
   * anything else. Resolves with the run's state once `first` (or the first scheduling) is done.
   */
  drive(stored: StoredRun, first?: RunMachineEvent): Promise<TaskState | undefined> {
    const { runId } = stored.record;
    const existing = this.#executions.get(runId);
    if (existing !== undefined)
      return first === undefined ? Promise.resolve(undefined) : existing.send(first);
    if (this.#stopping) return Promise.resolve(undefined);
    const execution = new RunExecution(this.#options, stored);
    this.#executions.set(runId, execution);
    void execution.ended.then(() => {
      if (this.#executions.get(runId) === execution) this.#executions.delete(runId);
    });
    return execution.start(first);
  }

  /**
   * Applies an event to a run: through the execution driving it here, or by claiming the run when
   * no live replica drives it. Undefined when another live replica owns it (that one answers).
   */
  /** Whether this replica drives the run or could claim it (nobody holds a live lease on it). */
  mayDrive(stored: StoredRun): boolean {
    return this.#executions.has(stored.record.runId) || !this.#heldElsewhere(stored.record);
  }

  async deliver(stored: StoredRun, event: RunMachineEvent): Promise<TaskState | undefined> {
    const local = this.#executions.get(stored.record.runId);
    if (local !== undefined) return local.send(event);
    const claimed = await this.#claim(stored);
    if (claimed === undefined) {
      // The claim lost to a write of this very replica (a run it had just accepted started while
      // the claim was under way): the execution now here takes the event, else nobody would answer.
      const startedMeanwhile = this.#executions.get(stored.record.runId);
      return startedMeanwhile === undefined ? undefined : startedMeanwhile.send(event);
    }
    return this.drive(claimed, event);
  }

  /**
   * Watches every run record and sweeps for orphans until stopped. The first sweep waits until the
   * watch has delivered every record the bucket held when it began, so a replica that has just
   * started adopts the orphans at once instead of sweeping an empty picture.
   */
  async watch(kv: KV): Promise<void> {
    const { values } = await retryBrokerFailures(() => kv.status());
    const watcher = await retryBrokerFailures(() => kv.watch());
    const loaded = new Promise<void>((resolve) => {
      this.#watchFilled = resolve;
    });
    const filled = () => this.#watchFilled();
    if (values === 0) filled();
    void (async () => {
      for await (const entry of watcher) {
        // Nothing pending behind this entry: the watch has caught up with the bucket.
        if (entry.delta === 0) filled();
        if (entry.operation !== "PUT") {
          this.#summaries.delete(entry.key);
          continue;
        }
        // A run this replica drives is read when it no longer does: its own writes are not parsed
        // (a copy, not a view of the connection's buffer, is kept meanwhile).
        if (this.#executions.has(entry.key)) this.#summaries.set(entry.key, entry.value.slice());
        else this.#summarize(entry.key, entry.value);
      }
    })();
    this.#sweeping = (async () => {
      await loaded;
      while (!this.#stopping) {
        await this.#sweep(kv);
        await sleep(SWEEP_MS);
      }
      watcher.stop();
    })();
  }

  /**
   * Keeps what the sweep needs of a run record (every replica sees every write of every run), or
   * nothing for an ended run, which never needs a driver again.
   */
  #summarize(runId: string, value: Uint8Array): RunSummary | undefined {
    try {
      const record = parsePayload(RunSummarySchema, value, `run record ${runId}`);
      if (TERMINAL_STATES.has(record.state)) {
        this.#summaries.delete(runId);
        return undefined;
      }
      const summary = {
        pending: record.pending.length,
        owner: record.owner,
        leaseUntil: record.leaseUntil === undefined ? 0 : Date.parse(record.leaseUntil),
        deadlineAt:
          record.deadlineAt === undefined ? Number.POSITIVE_INFINITY : Date.parse(record.deadlineAt),
      };
      this.#summaries.set(runId, summary);
      return summary;
    } catch (error) {
      this.#options.log.error({ err: error, run_id: runId }, "unreadable run record skipped");
      this.#summaries.delete(runId);
      return undefined;
    }
  }

  async #sweep(_kv: KV): Promise<void> {
    const now = Date.now();
    for (const [runId, held] of this.#summaries) {
      if (this.#stopping) return;
      if (this.#executions.has(runId)) continue;
      const summary = held instanceof Uint8Array ? this.#summarize(runId, held) : held;
      if (summary === undefined) continue;
      const orphaned = summary.owner === undefined || summary.leaseUntil < now;
      const expired = summary.deadlineAt < now;
      if (!orphaned || (summary.pending === 0 && !expired)) continue;
      try {
        const stored = await this.#options.runs.get(runId);
        if (stored === undefined) continue;
        const claimed = await this.#claim(stored);
        if (claimed === undefined) continue;
        this.#options.log.info(
          { run_id: runId, previous_owner: summary.owner },
          "took over a run nobody drives",
        );
        await this.drive(claimed, expired ? { type: "RUN.EXPIRED" } : undefined);
      } catch (error) {
        this.#options.log.warn({ err: error, run_id: runId }, "could not take over run; will try again");
      }
    }
  }

  /** Makes this replica the run's owner with compare-and-set; undefined if a live owner has it. */
  async #claim(stored: StoredRun): Promise<StoredRun | undefined> {
    const { record } = stored;
    if (TERMINAL_STATES.has(record.state) || this.#heldElsewhere(record)) return undefined;
    try {
      return await this.#options.runs.update(stored, {
        ...record,
        owner: this.#options.owner,
        leaseUntil: new Date(Date.now() + this.#options.leaseMs).toISOString(),
        updatedAt: new Date().toISOString(),
      });
    } catch (error) {
      if (error instanceof RunOwnershipLostError) return undefined;
      throw error;
    }
  }

  #heldElsewhere(record: StoredRun["record"]): boolean {
    return (
      record.owner !== undefined &&
      record.owner !== this.#options.owner &&
      Date.parse(record.leaseUntil ?? "") > Date.now()
    );
  }

  /** Stops taking runs over and lets in-flight effects go; the runs' leases lapse for others. */
  async stop(): Promise<void> {
    this.#stopping = true;
    this.#watchFilled();
    await this.#sweeping;
    for (const execution of this.#executions.values()) execution.stop();
  }
}
