import type { KV } from "@nats-io/kv";
import { shortStateName, TERMINAL_STATES } from "../../schemas/a2a.ts";
import { ErrorCode } from "../../schemas/errors.ts";
import { type RunRecord, RunRecordSchema } from "../../schemas/run.ts";
import { encodePayload, LoomError, parsePayload } from "../kit/index.ts";
import type { DefinitionStore } from "./definition-store.ts";

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

/**
 * Run records in KV `loom_runs`: created once, then only updated against the revision last read.
 * A record names its definition (`definitionRef`, stored once in the definition store) rather
 * than carrying it; records read from here have it back in `definition`.
 */
export class RunStore {
  readonly #kv: KV;
  readonly #definitions: DefinitionStore;

  constructor(kv: KV, definitions: DefinitionStore) {
    this.#kv = kv;
    this.#definitions = definitions;
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
    const record = parsePayload(RunRecordSchema, entry.value, `run record ${runId}`);
    const { definitionRef } = record;
    if (record.definition === undefined && definitionRef !== undefined) {
      record.definition = await this.#definitions.get(definitionRef);
    }
    return { record, revision: entry.revision };
  }

  /** Writes a new run; returns undefined when a run with this id already exists. */
  async create(record: RunRecord): Promise<StoredRun | undefined> {
    try {
      const revision = await this.#kv.create(record.runId, await this.#encode(record));
      return { record, revision };
    } catch (error) {
      if (await this.#kv.get(record.runId)) return undefined;
      throw new LoomError(ErrorCode.INTERNAL, `could not store run ${record.runId}`, { cause: error });
    }
  }

  async update(stored: StoredRun, record: RunRecord): Promise<StoredRun> {
    try {
      const revision = await this.#kv.update(record.runId, await this.#encode(record), stored.revision);
      return { record, revision };
    } catch (error) {
      const current = await this.#kv.get(record.runId);
      if (current !== null && current.revision !== stored.revision)
        throw new RunOwnershipLostError(record.runId, { cause: error });
      throw error;
    }
  }

  /** The record as stored: its definition by reference. */
  async #encode(record: RunRecord): Promise<Uint8Array> {
    const { definition, ...rest } = record;
    const stored =
      definition === undefined ? rest : { ...rest, definitionRef: await this.#definitions.put(definition) };
    return encodePayload(RunRecordSchema, stored, "run record");
  }
}
