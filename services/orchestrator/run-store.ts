import type { KV } from "@nats-io/kv";
import { shortStateName, TERMINAL_STATES } from "../../schemas/a2a.ts";
import { ErrorCode } from "../../schemas/errors.ts";
import { type RunRecord, RunRecordSchema } from "../../schemas/run.ts";
import {
  casWrite,
  encodeJson,
  isBrokerFailure,
  LoomError,
  parsePayload,
  readEntry,
  retryBrokerFailures,
} from "../kit/index.ts";
import type { DefinitionStore } from "./definition-store.ts";

/** Reads and writes of `change` before giving up on a record others keep writing. */
const CHANGE_ATTEMPTS = 5;

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

  /**
   * Every run id in the store, each once: a KV listing is a consumer that also delivers keys written
   * while it runs, so a run updated during the listing would otherwise come twice (and show twice
   * in a list or an inbox).
   */
  async keys(): Promise<AsyncIterable<string>> {
    const listed = await retryBrokerFailures(() => this.#kv.keys());
    return (async function* once() {
      const seen = new Set<string>();
      for await (const key of listed) {
        if (seen.has(key)) continue;
        seen.add(key);
        yield key;
      }
    })();
  }

  /** The run, which must exist and not have ended: RUN_NOT_FOUND or RUN_NOT_WAITING otherwise. */
  async getActive(runId: string): Promise<StoredRun> {
    const stored = await this.get(runId);
    if (stored === undefined) throw new LoomError(ErrorCode.RUN_NOT_FOUND, `no run with id ${runId}`);
    assertNotEnded(stored);
    return stored;
  }

  async get(runId: string): Promise<StoredRun | undefined> {
    const entry = await storeCall(runId, () => readEntry(this.#kv, runId));
    if (entry === null) return undefined;
    const record = parsePayload(RunRecordSchema, entry.value, `run record ${runId}`);
    const { definitionRef } = record;
    if (record.definition === undefined && definitionRef !== undefined) {
      record.definition = await storeCall(runId, () => this.#definitions.get(definitionRef));
    }
    return { record, revision: entry.revision };
  }

  /**
   * Writes a new run; returns undefined when a run with this id already exists. A broker that
   * stays down fails it with BROKER_UNAVAILABLE, which the caller may retry: the run is not stored.
   */
  async create(record: RunRecord): Promise<StoredRun | undefined> {
    const payload = await this.#payloadOf(record);
    const revision = await storeCall(record.runId, () =>
      casWrite(this.#kv, record.runId, payload, undefined),
    );
    return revision === undefined ? undefined : { record, revision };
  }

  /**
   * Writes the run's next record against `stored`'s revision. A record whose definition is stored
   * already goes out in this same turn (no await before the publish), so a write and what is sent
   * with it leave in one socket write.
   */
  async update(stored: StoredRun, record: RunRecord): Promise<StoredRun> {
    const known = this.#encodeKnown(record);
    const payload = known ?? (await this.#payloadOf(record));
    const revision = await storeCall(record.runId, () =>
      casWrite(this.#kv, record.runId, payload, stored.revision),
    );
    if (revision === undefined) throw new RunOwnershipLostError(record.runId);
    return { record, revision };
  }

  /**
   * Changes an existing run's record with compare-and-set, reading it again when another write
   * came first. `change` returns undefined to leave the record as it is.
   */
  async change(runId: string, change: (record: RunRecord) => RunRecord | undefined): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      const stored = await this.get(runId);
      if (stored === undefined) throw new LoomError(ErrorCode.RUN_NOT_FOUND, `no run with id ${runId}`);
      const record = change(stored.record);
      if (record === undefined) return;
      try {
        await this.update(stored, record);
        return;
      } catch (error) {
        if (!(error instanceof RunOwnershipLostError) || attempt >= CHANGE_ATTEMPTS) throw error;
      }
    }
  }

  /**
   * The record as stored: its definition by reference. It is built here from typed values, so it
   * is not parsed again on its way out (a write per step); every read parses it.
   */
  #payloadOf(record: RunRecord): Promise<Uint8Array> {
    const { definition } = record;
    return storeCall(record.runId, async () =>
      encodeStored(record, definition === undefined ? undefined : await this.#definitions.put(definition)),
    );
  }

  /** The record as stored, built now when its definition's key is known (or it has none). */
  #encodeKnown(record: RunRecord): Uint8Array | undefined {
    const { definition } = record;
    if (definition === undefined) return encodeStored(record, undefined);
    const definitionRef = this.#definitions.keyOf(definition);
    return definitionRef === undefined ? undefined : encodeStored(record, definitionRef);
  }
}

/** A record without its definition, naming it by `definitionRef` when given. */
function encodeStored(record: RunRecord, definitionRef: string | undefined): Uint8Array {
  const { definition: _definition, ...rest } = record;
  return encodeJson(definitionRef === undefined ? rest : { ...rest, definitionRef });
}

/** A store call whose broker stayed away through every retry fails with a retryable code. */
async function storeCall<T>(runId: string, call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (error) {
    if (!isBrokerFailure(error)) throw error;
    throw new LoomError(ErrorCode.BROKER_UNAVAILABLE, `could not reach the run store for run ${runId}`, {
      cause: error,
    });
  }
}

/** RUN_NOT_WAITING for a run that has ended. */
export function assertNotEnded(stored: StoredRun): void {
  const { runId, state } = stored.record;
  if (TERMINAL_STATES.has(state))
    throw new LoomError(ErrorCode.RUN_NOT_WAITING, `run ${runId} already ended (${shortStateName(state)})`);
}
