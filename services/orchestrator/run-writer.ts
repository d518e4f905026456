import type { RunRecord } from "../../schemas/run.ts";
import type { RunStore, StoredRun } from "./run-store.ts";

interface NextWrite {
  record: RunRecord;
  /** Everyone waiting for this record, or for one it replaced, to be stored. */
  waiters: Array<PromiseWithResolvers<void>>;
}

/**
 * The lease holder's writes of one run's record, pipelined: the run goes on while a write is in
 * flight. One write is in flight at a time (each compare-and-set names the revision the one before
 * it made); a record waiting to go out is replaced by a newer one, so a burst of transitions costs
 * one write. A failed write (another replica took the run, the broker stayed away) fails every
 * write after it and is reported once to `onFailure`.
 */
export class RunWriter {
  readonly #runs: Pick<RunStore, "update">;
  readonly #onFailure: (error: unknown) => void;
  #acked: StoredRun;
  #next: NextWrite | undefined;
  #flight: Promise<void> | undefined;
  #failure: { error: unknown } | undefined;

  constructor(runs: Pick<RunStore, "update">, stored: StoredRun, onFailure: (error: unknown) => void) {
    this.#runs = runs;
    this.#acked = stored;
    this.#onFailure = onFailure;
  }

  /** Resolves once `record` (or a newer record that replaced it) is stored. */
  write(record: RunRecord): Promise<void> {
    if (this.#failure !== undefined) return Promise.reject(this.#failure.error);
    const waiter = Promise.withResolvers<void>();
    // A caller that goes on without waiting hears of a failure through onFailure instead.
    waiter.promise.catch(() => undefined);
    if (this.#next === undefined) this.#next = { record, waiters: [waiter] };
    else {
      this.#next.record = record;
      this.#next.waiters.push(waiter);
    }
    this.#flight ??= this.#drain();
    return waiter.promise;
  }

  /** Resolves once every write handed in so far is stored; rejects if one failed. */
  async flushed(): Promise<void> {
    await this.#flight;
    if (this.#failure !== undefined) throw this.#failure.error;
  }

  #queued(): NextWrite | undefined {
    return this.#next;
  }

  async #drain(): Promise<void> {
    while (this.#next !== undefined) {
      const { record, waiters } = this.#next;
      this.#next = undefined;
      try {
        this.#acked = await this.#runs.update(this.#acked, record);
        for (const waiter of waiters) waiter.resolve();
      } catch (error) {
        this.#failure = { error };
        // Written while this one was in flight: those fail with it.
        const queued = this.#queued();
        for (const waiter of [...waiters, ...(queued?.waiters ?? [])]) waiter.reject(error);
        this.#next = undefined;
        this.#onFailure(error);
      }
    }
    this.#flight = undefined;
  }
}
