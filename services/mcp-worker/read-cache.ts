/** Limits of one server's cache, from its `cache:` config. */
export interface ReadCacheOptions {
  ttlMs: number;
  maxEntries: number;
  maxBytes: number;
  /** The clock, in milliseconds; tests pass their own. */
  now?: () => number;
}

interface Entry<T> {
  value: T;
  /** The server version that gave the answer, for the call records of later hits. */
  version: string;
  bytes: number;
  expiresAt: number;
}

/**
 * Answers of one MCP server's cacheable reads, in this process's memory only, unmasked (masking
 * is per caller and happens after the lookup). Bounded by a TTL, a number of entries and a number
 * of bytes; the least recently used answers go first. Values are copied in and out, so whatever a
 * caller does to an answer (masking builds new objects, but a later change might not) never
 * reaches the next caller.
 */
export class ReadCache<T> {
  readonly #options: Required<ReadCacheOptions>;
  /** A Map keeps insertion order: re-inserting on use makes its first key the least recently used. */
  readonly #entries = new Map<string, Entry<T>>();
  #bytes = 0;

  constructor(options: ReadCacheOptions) {
    this.#options = { now: Date.now, ...options };
  }

  get size(): number {
    return this.#entries.size;
  }

  get bytes(): number {
    return this.#bytes;
  }

  get(key: string): { value: T; version: string } | undefined {
    const entry = this.#entries.get(key);
    if (entry === undefined) return undefined;
    this.#entries.delete(key);
    if (entry.expiresAt <= this.#options.now()) {
      this.#bytes -= entry.bytes;
      return undefined;
    }
    this.#entries.set(key, entry);
    return { value: structuredClone(entry.value), version: entry.version };
  }

  /** Keeps an answer; one larger than the whole budget is not kept at all. */
  set(key: string, value: T, version: string): void {
    const bytes = Buffer.byteLength(JSON.stringify(value) ?? "");
    this.#remove(key);
    if (bytes > this.#options.maxBytes) return;
    this.#entries.set(key, {
      value: structuredClone(value),
      version,
      bytes,
      expiresAt: this.#options.now() + this.#options.ttlMs,
    });
    this.#bytes += bytes;
    while (this.#entries.size > this.#options.maxEntries || this.#bytes > this.#options.maxBytes) {
      const oldest = this.#entries.keys().next().value;
      if (oldest === undefined) break;
      this.#remove(oldest);
    }
  }

  #remove(key: string): void {
    const entry = this.#entries.get(key);
    if (entry === undefined) return;
    this.#entries.delete(key);
    this.#bytes -= entry.bytes;
  }
}
