import type { KV } from "@nats-io/kv";
import type { z } from "zod";
import { parsePayload } from "./bus.ts";
import { retryBrokerFailures } from "./kv-cas.ts";
import type { Logger } from "./logger.ts";

/** Longest wait for the bucket's present values before serving from what arrived. */
const INITIAL_LOAD_MS = 5_000;

/** One change of a mirrored entry after the initial load: the value before and after (undefined: absent). */
export type MirrorChange<T> = (key: string, before: T | undefined, after: T | undefined) => void;
/** A key's first token: `run-1` of `run-1.config-2`. */
const firstToken = (key: string) => key.split(".", 1)[0] ?? key;

/**
 * An in-memory copy of one KV bucket's values, kept current by a watch: every gateway replica
 * lists what the workers registered without a KV read per request, the push notifier finds a
 * run's webhooks without one per run event, and acp-policy reads a tool's governance without one
 * per decision. Entries that do not parse are logged and left out.
 */
export class KvMirror<Schema extends z.ZodType> {
  readonly #values = new Map<string, z.infer<Schema>>();
  readonly #listeners = new Set<MirrorChange<z.infer<Schema>>>();
  #loaded = false;
  /** Keys by their first token, for `under`. */
  readonly #groups = new Map<string, Set<string>>();
  /** The bucket's revision the mirror has caught up with, and who waits for a later one. */
  #revision = 0;
  readonly #waiting = new Set<{ revision: number; resolve: () => void }>();
  #stop: (() => void) | undefined;

  private constructor() {}

  /** Opens the mirror once the bucket's present values are in. */
  static async open<Schema extends z.ZodType>(
    kv: KV,
    schema: Schema,
    what: string,
    log: Logger,
  ): Promise<KvMirror<Schema>> {
    const mirror = new KvMirror<Schema>();
    const watcher = await retryBrokerFailures(() => kv.watch());
    mirror.#stop = () => watcher.stop();
    const { promise: loaded, resolve: resolveLoaded } = Promise.withResolvers<void>();
    const resolve = () => {
      mirror.#loaded = true;
      resolveLoaded();
    };
    if ((await retryBrokerFailures(() => kv.status())).values === 0) resolve();
    // A bucket of only delete markers may never report an initial entry: start anyway.
    setTimeout(resolve, INITIAL_LOAD_MS).unref();
    void (async () => {
      for await (const entry of watcher) {
        const before = mirror.#values.get(entry.key);
        mirror.#remove(entry.key);
        if (entry.operation === "PUT") {
          try {
            mirror.#add(entry.key, parsePayload(schema, entry.value, `${what} ${entry.key}`));
          } catch (error) {
            log.warn({ err: error, key: entry.key }, `${what} left out: it does not parse`);
          }
        }
        if (mirror.#loaded) {
          const after = mirror.#values.get(entry.key);
          for (const listener of mirror.#listeners) listener(entry.key, before, after);
        }
        mirror.#caughtUp(entry.revision);
        if (entry.delta === 0) resolve();
      }
    })();
    await loaded;
    return mirror;
  }

  /** Hears every change after the initial load; returns how to stop hearing them. */
  onChange(listener: MirrorChange<z.infer<Schema>>): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  #add(key: string, value: z.infer<Schema>): void {
    this.#values.set(key, value);
    const group = this.#groups.get(firstToken(key)) ?? new Set<string>();
    this.#groups.set(firstToken(key), group.add(key));
  }

  #remove(key: string): void {
    this.#values.delete(key);
    const group = this.#groups.get(firstToken(key));
    group?.delete(key);
    if (group?.size === 0) this.#groups.delete(firstToken(key));
  }

  #caughtUp(revision: number): void {
    this.#revision = Math.max(this.#revision, revision);
    for (const waiter of this.#waiting)
      if (waiter.revision <= this.#revision) {
        this.#waiting.delete(waiter);
        waiter.resolve();
      }
  }

  /**
   * Resolves once the mirror holds the bucket as of `revision` (what a write of this process
   * returned), so a read right after the write sees it.
   */
  reached(revision: number): Promise<void> {
    if (revision <= this.#revision) return Promise.resolve();
    const { promise, resolve } = Promise.withResolvers<void>();
    this.#waiting.add({ revision, resolve });
    return promise;
  }

  values(): IterableIterator<z.infer<Schema>> {
    return this.#values.values();
  }

  get(key: string): z.infer<Schema> | undefined {
    return this.#values.get(key);
  }

  /** The values of every key `<token>.…`. */
  under(token: string): z.infer<Schema>[] {
    const keys = this.#groups.get(token) ?? [];
    return [...keys].flatMap((key) => {
      const value = this.#values.get(key);
      return value === undefined ? [] : [value];
    });
  }

  close(): void {
    this.#stop?.();
    for (const waiter of this.#waiting) waiter.resolve();
    this.#waiting.clear();
  }
}
