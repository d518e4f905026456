import type { KV } from "@nats-io/kv";
import { TaskState } from "../../schemas/a2a.ts";
import { ErrorCode } from "../../schemas/errors.ts";
import { type ContextMemory, ContextMemorySchema, type MemoryEntry } from "../../schemas/memory.ts";
import type { RunRecord } from "../../schemas/run.ts";
import { casUpdate, encodePayload, type Logger, LoomError, parsePayload, readEntry } from "../kit/index.ts";

/** Attempts at the compare-and-set append before giving up (other runs of the context write too). */
const APPEND_ATTEMPTS = 10;

export interface MemoryLimits {
  maxEntries: number;
  maxBytes: number;
}

/**
 * Context memory in KV `loom_memory`: each finished run appends what it was asked and what it
 * gave; runs in the same context read it as `$memory`. A context belongs to whoever claimed it
 * first (see `claim`); appends use compare-and-set, and the oldest entries go first when the count
 * or byte limit is reached.
 */
export class ContextMemoryStore {
  readonly #kv: KV;
  readonly #limits: MemoryLimits;
  readonly #log: Logger;

  constructor(kv: KV, limits: MemoryLimits, log: Logger) {
    this.#kv = kv;
    this.#limits = limits;
    this.#log = log;
  }

  /** The context's memory with its owner; undefined when it has none. */
  async read(contextId: string): Promise<ContextMemory | undefined> {
    const entry = await readEntry(this.#kv, contextId);
    if (entry === null) return undefined;
    return parsePayload(ContextMemorySchema, entry.value, `memory of ${contextId}`);
  }

  /**
   * The context's owner, making `principal` its owner when the context has no memory yet: the
   * first run admitted into a context claims it (compare-and-set, so of two at once one wins)
   * before it runs, so nobody can take a context whose first run is still going. Undefined for a
   * context stored before owners were recorded.
   */
  async claim(contextId: string, principal: string): Promise<string | undefined> {
    let owner: string | undefined;
    await casUpdate(
      this.#kv,
      contextId,
      (current) => {
        if (current !== null) {
          owner = parsePayload(ContextMemorySchema, current.value, `memory of ${contextId}`).owner;
          return undefined;
        }
        owner = principal;
        return encodePayload(ContextMemorySchema, { contextId, owner, entries: [] }, "context memory");
      },
      { attempts: APPEND_ATTEMPTS },
    );
    return owner;
  }

  /** Forgets the context (later runs start from nothing). */
  async clear(contextId: string): Promise<void> {
    await this.#kv.purge(contextId);
  }

  /**
   * Appends a finished run; a run already recorded (a replay after a crash) is not added twice. A
   * rejected run (policy refused it something) leaves nothing: what it was refused is no memory.
   * A context that is now someone else's (cleared and claimed anew while the run went on) takes the
   * entry only when `mayWrite` allows its starter to use that owner's context, as admission did.
   * The usual append (a context of the run's own starter) is one read and one write.
   */
  async remember(record: RunRecord, mayWrite: (owner: string | undefined) => Promise<void>): Promise<void> {
    if (record.state === TaskState.REJECTED) return;
    const entry: MemoryEntry = {
      runId: record.runId,
      workflowId: record.workflowId,
      at: record.updatedAt,
      input: record.input,
      ...(record.output === undefined ? {} : { output: record.output }),
      ...(record.error === undefined ? {} : { error: record.error }),
    };
    const allowed = new Set([record.startedBy]);
    try {
      const undecided = await this.#append(record, entry, allowed);
      if (undecided === undefined) return;
      // Decided outside the compare-and-set (a request to acp-policy), then appended again.
      await mayWrite(undecided.owner);
      allowed.add(undecided.owner);
      // Claimed by yet another principal since the decision: not this run's to append to.
      if ((await this.#append(record, entry, allowed)) !== undefined) {
        throw new LoomError(ErrorCode.POLICY_DENIED, `context ${record.contextId} changed owner`);
      }
    } catch (error) {
      this.#log.warn(
        { err: error, run_id: record.runId, context_id: record.contextId },
        "could not record the run in its context memory",
      );
    }
  }

  /**
   * The compare-and-set append of `entry`, unless the context's owner is not among `allowed`: then
   * that owner, for a decision first.
   */
  async #append(
    record: RunRecord,
    entry: MemoryEntry,
    allowed: ReadonlySet<string | undefined>,
  ): Promise<{ owner: string | undefined } | undefined> {
    let undecided: { owner: string | undefined } | undefined;
    await casUpdate(
      this.#kv,
      record.contextId,
      (current) => {
        undecided = undefined;
        const memory: ContextMemory =
          current === null
            ? {
                contextId: record.contextId,
                ...(record.startedBy === undefined ? {} : { owner: record.startedBy }),
                entries: [],
              }
            : parsePayload(ContextMemorySchema, current.value, `memory of ${record.contextId}`);
        if (memory.entries.some((existing) => existing.runId === record.runId)) return undefined;
        if (!allowed.has(memory.owner)) {
          undecided = { owner: memory.owner };
          return undefined;
        }
        return this.#bounded({ ...memory, entries: [...memory.entries, entry] });
      },
      { attempts: APPEND_ATTEMPTS },
    );
    return undecided;
  }

  #bounded(memory: ContextMemory): Uint8Array {
    let entries = memory.entries.slice(-this.#limits.maxEntries);
    let payload = encodePayload(ContextMemorySchema, { ...memory, entries }, "context memory");
    while (payload.byteLength > this.#limits.maxBytes && entries.length > 1) {
      entries = entries.slice(1);
      payload = encodePayload(ContextMemorySchema, { ...memory, entries }, "context memory");
    }
    return payload;
  }
}
