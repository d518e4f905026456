import type { KV } from "@nats-io/kv";
import type { z } from "zod";
import { type Logger, parsePayload, retryBrokerFailures } from "../../kit/index.ts";

/** Longest wait for the bucket's present values before serving from what arrived. */
const INITIAL_LOAD_MS = 5_000;

/**
 * An in-memory copy of one KV bucket's values, kept current by a watch: every gateway replica
 * lists what the workers registered without a KV read per request. Entries that do not parse are
 * logged and left out.
 */
export class KvMirror<Schema extends z.ZodType> {
  readonly #values = new Map<string, z.infer<Schema>>();
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
    const { promise: loaded, resolve } = Promise.withResolvers<void>();
    if ((await retryBrokerFailures(() => kv.status())).values === 0) resolve();
    // A bucket of only delete markers may never report an initial entry: start anyway.
    setTimeout(resolve, INITIAL_LOAD_MS).unref();
    void (async () => {
      for await (const entry of watcher) {
        if (entry.operation === "PUT") {
          try {
            mirror.#values.set(entry.key, parsePayload(schema, entry.value, `${what} ${entry.key}`));
          } catch (error) {
            log.warn({ err: error, key: entry.key }, `${what} left out: it does not parse`);
          }
        } else {
          mirror.#values.delete(entry.key);
        }
        if (entry.delta === 0) resolve();
      }
    })();
    await loaded;
    return mirror;
  }

  values(): IterableIterator<z.infer<Schema>> {
    return this.#values.values();
  }

  get(key: string): z.infer<Schema> | undefined {
    return this.#values.get(key);
  }

  close(): void {
    this.#stop?.();
  }
}
