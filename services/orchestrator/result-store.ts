import type { KV } from "@nats-io/kv";
import { z } from "zod";
import { encodeJson, jsonBytes, parsePayload, readEntry, retryBrokerFailures } from "../kit/index.ts";

/** How a large step result stands in a run's context: a pointer into KV `loom_results`. */
export const ResultRefSchema = z.object({ $ref: z.string().startsWith("loom_results/") }).strict();
export type ResultRef = z.infer<typeof ResultRefSchema>;

const StoredResultSchema = z.object({ value: z.unknown() });
const CACHE_SIZE = 64;

/**
 * Keeps step results out of the machine's context (which is persisted after every transition)
 * once the context's results would pass a size budget: the value goes to KV `loom_results` once,
 * and the context holds a reference that expressions see through transparently. The budget is per
 * run, not per result, so a run's record stays bounded however many steps return data.
 */
export class ResultStore {
  readonly #kv: KV;
  readonly #inlineMaxBytes: number;
  /** Recently used large results, so a run's later steps do not fetch them again; bounded. */
  readonly #cache = new Map<string, unknown>();

  constructor(kv: KV, inlineMaxBytes: number) {
    this.#kv = kv;
    this.#inlineMaxBytes = inlineMaxBytes;
  }

  /**
   * The value itself while it and the run's results so far (`steps`) fit the budget, else a
   * reference to where it was stored under `key`.
   */
  async shrink(key: string, value: unknown, steps: Record<string, unknown>): Promise<unknown> {
    const encoded = encodeJson({ value });
    if (encoded.byteLength + jsonBytes(steps) <= this.#inlineMaxBytes) return value;
    await retryBrokerFailures(() => this.#kv.put(key, encoded));
    this.#remember(key, value);
    return { $ref: `loom_results/${key}` } satisfies ResultRef;
  }

  /** Step results with every reference replaced by its value (a parallel step's branches included). */
  async expand(steps: Record<string, unknown>, depth = 2): Promise<Record<string, unknown>> {
    const entries = await Promise.all(
      Object.entries(steps).map(async ([name, value]) => {
        const object = typeof value === "object" && value !== null && !Array.isArray(value);
        // Only an object with a `$ref` can be one (checked before the schema: every result of every
        // step is looked at again as each step starts).
        const ref = object && "$ref" in value ? ResultRefSchema.safeParse(value) : undefined;
        if (ref?.success)
          return [name, await this.#load(ref.data.$ref.slice("loom_results/".length))] as const;
        const nested = depth > 1 && object;
        return [
          name,
          nested ? await this.expand(value as Record<string, unknown>, depth - 1) : value,
        ] as const;
      }),
    );
    return Object.fromEntries(entries);
  }

  async #load(key: string): Promise<unknown> {
    if (this.#cache.has(key)) {
      const cached = this.#cache.get(key);
      this.#remember(key, cached);
      return cached;
    }
    // A broker restarting under the run is waited out: a failure here would fail the run's output.
    const entry = await readEntry(this.#kv, key);
    if (entry === null) throw new Error(`stored result ${key} is gone`);
    const { value } = parsePayload(StoredResultSchema, entry.value, `stored result ${key}`);
    this.#remember(key, value);
    return value;
  }

  #remember(key: string, value: unknown): void {
    this.#cache.delete(key);
    this.#cache.set(key, value);
    if (this.#cache.size > CACHE_SIZE) this.#cache.delete(this.#cache.keys().next().value as string);
  }
}
