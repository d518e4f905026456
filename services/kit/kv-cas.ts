import { setTimeout as sleep } from "node:timers/promises";
import type { KV, KvEntry } from "@nats-io/kv";
import { ExponentialBackoff, handleWhen, retry } from "cockatiel";
import { isBrokerFailure } from "./errors.ts";

/**
 * Broker failures are retried for about 15 s with backoff: long enough for a restarted server to
 * come back or a cluster to elect a new leader, short enough that a broker that stays down ends
 * the caller's work with a retryable error (BROKER_UNAVAILABLE) rather than hanging it.
 */
const brokerRetry = retry(handleWhen(isBrokerFailure), {
  maxAttempts: 10,
  backoff: new ExponentialBackoff({ initialDelay: 100, maxDelay: 2_000 }),
});

/** Runs `work` again while it fails because of the broker (see `isBrokerFailure`); other errors pass. */
export function retryBrokerFailures<T>(work: () => Promise<T>): Promise<T> {
  return brokerRetry.execute(work);
}

/** Reads a key, retrying broker failures; null when it is missing or deleted. */
export async function readEntry(kv: KV, key: string): Promise<KvEntry | null> {
  const entry = await retryBrokerFailures(() => kv.get(key));
  return entry === null || entry.operation !== "PUT" ? null : entry;
}

/**
 * One compare-and-set write: `kv.create` when `revision` is undefined, else `kv.update` against it.
 * Resolves with the new revision, or undefined when someone else wrote the key first (the
 * revision moved on). A broker failure is retried. Its write may have landed although the answer
 * was lost: the retry then finds the revision moved on to exactly these bytes and counts the write
 * as this writer's. Payloads carry a writer and a time, so another writer's bytes differ.
 */
export async function casWrite(
  kv: KV,
  key: string,
  payload: Uint8Array,
  revision: number | undefined,
): Promise<number | undefined> {
  let unanswered = false;
  return retryBrokerFailures(async () => {
    try {
      return revision === undefined ? await kv.create(key, payload) : await kv.update(key, payload, revision);
    } catch (error) {
      unanswered ||= isBrokerFailure(error);
      const current = await kv.get(key);
      if (current !== null && current.revision !== revision) {
        const landed = unanswered && current.operation === "PUT" && sameBytes(current.value, payload);
        return landed ? current.revision : undefined;
      }
      throw error;
    }
  });
}

export interface CasUpdateOptions {
  /** Reads and writes before giving up on a key that others keep changing. */
  attempts: number;
  /** Upper bound of the random pause between attempts, so contending writers spread out. */
  jitterMs?: number;
}

/**
 * Read, change, compare-and-set, again on conflict: `change` gets the current entry (null when the
 * key is missing) and returns the bytes to write, or undefined to leave the key as it is.
 * Resolves with the revision written, undefined when `change` declined, and rejects with
 * `CasContendedError` when every attempt met another writer.
 */
export async function casUpdate(
  kv: KV,
  key: string,
  change: (current: KvEntry | null) => Uint8Array | undefined,
  options: CasUpdateOptions,
): Promise<number | undefined> {
  for (let attempt = 0; attempt < options.attempts; attempt++) {
    const current = await readEntry(kv, key);
    const payload = change(current);
    if (payload === undefined) return undefined;
    const written = await casWrite(kv, key, payload, current?.revision);
    if (written !== undefined) return written;
    if (options.jitterMs !== undefined) await sleep(Math.random() * options.jitterMs);
  }
  throw new CasContendedError(key, options.attempts);
}

/** Every compare-and-set attempt on a key met a write of another writer. */
export class CasContendedError extends Error {
  override readonly name = "CasContendedError";
  constructor(key: string, attempts: number) {
    super(`${key} kept changing under ${attempts} compare-and-set attempts`);
  }
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.byteLength === b.byteLength && a.every((byte, index) => byte === b[index]);
}
