import type { KV } from "@nats-io/kv";
import { shortStateName, TERMINAL_STATES } from "../../schemas/a2a.ts";
import { ErrorCode } from "../../schemas/errors.ts";
import { type RunRecord, RunRecordSchema } from "../../schemas/run.ts";
import { encodePayload, LoomError, parsePayload } from "../kit/index.ts";

export interface StoredRun {
  record: RunRecord;
  /** KV revision: the fencing token for the next write. */
  revision: number;
}

/** Thrown when a compare-and-set fails: someone else wrote the run since we read it. */
export class RunOwnershipLostError extends Error {
  override readonly name = "RunOwnershipLostError";
  constructor(runId: string, options?: { cause?: unknown }) {
    super(`run ${runId} was written by another orchestrator; this one stops driving it`, options);
  }
}

/** Run records in KV `loom_runs`: created once, then only updated against the revision last read. */
export class RunStore {
  readonly #kv: KV;

  constructor(kv: KV) {
    this.#kv = kv;
  }

  /** Every run id in the store. */
  keys(): Promise<AsyncIterable<string>> {
    return this.#kv.keys();
  }

  /** The run, which must exist and not have ended: RUN_NOT_FOUND or RUN_NOT_WAITING otherwise. */
  async getActive(runId: string): Promise<StoredRun> {
    const stored = await this.get(runId);
    if (stored === undefined) throw new LoomError(ErrorCode.RUN_NOT_FOUND, `no run with id ${runId}`);
    if (TERMINAL_STATES.has(stored.record.state)) {
      throw new LoomError(
        ErrorCode.RUN_NOT_WAITING,
        `run ${runId} already ended (${shortStateName(stored.record.state)})`,
      );
    }
    return stored;
  }

  async get(runId: string): Promise<StoredRun | undefined> {
    const entry = await this.#kv.get(runId);
    if (entry === null || entry.operation !== "PUT") return undefined;
    return {
      record: parsePayload(RunRecordSchema, entry.value, `run record ${runId}`),
      revision: entry.revision,
    };
  }

  /** Writes a new run; returns undefined when a run with this id already exists. */
  async create(record: RunRecord): Promise<StoredRun | undefined> {
    try {
      const revision = await this.#kv.create(
        record.runId,
        encodePayload(RunRecordSchema, record, "run record"),
      );
      return { record, revision };
    } catch (error) {
      if (await this.#kv.get(record.runId)) return undefined;
      throw new LoomError(ErrorCode.INTERNAL, `could not store run ${record.runId}`, { cause: error });
    }
  }

  async update(stored: StoredRun, record: RunRecord): Promise<StoredRun> {
    try {
      const revision = await this.#kv.update(
        record.runId,
        encodePayload(RunRecordSchema, record, "run record"),
        stored.revision,
      );
      return { record, revision };
    } catch (error) {
      const current = await this.#kv.get(record.runId);
      if (current !== null && current.revision !== stored.revision)
        throw new RunOwnershipLostError(record.runId, { cause: error });
      throw error;
    }
  }
}
