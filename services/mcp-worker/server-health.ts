import type { KV } from "@nats-io/kv";
import { type ServerHealth, ServerHealthSchema, serverHealthKey } from "../../schemas/mcp-health.ts";
import { encodePayload, type Logger } from "../kit/index.ts";
import type { ServerPool } from "./server-pool.ts";

export interface HealthReporterOptions {
  kv: KV;
  /** This worker's id in the record keys (KV-safe). */
  worker: string;
  log: Logger;
  /** Changes within this window are written once. */
  debounceMs?: number;
  /** A record is written at least this often, so readers can tell a gone worker by its age. */
  heartbeatMs?: number;
}

const DEFAULT_DEBOUNCE_MS = 250;
const DEFAULT_HEARTBEAT_MS = 15_000;

/**
 * Writes each server's health, as this worker sees it, to KV `loom_servers` when it changes (at
 * most once per debounce window: in-flight counts change with every call) and on a heartbeat.
 * Only the meaningful part of a record is compared, so an idle server costs one write per beat.
 */
export class HealthReporter {
  readonly #options: Required<HealthReporterOptions>;
  readonly #pools: readonly ServerPool[];
  readonly #pending = new Map<string, NodeJS.Timeout>();
  readonly #written = new Map<string, string>();
  #heartbeat: NodeJS.Timeout | undefined;
  #writes: Promise<void> = Promise.resolve();
  #closed = false;

  constructor(pools: readonly ServerPool[], options: HealthReporterOptions) {
    this.#pools = pools;
    this.#options = {
      debounceMs: DEFAULT_DEBOUNCE_MS,
      heartbeatMs: DEFAULT_HEARTBEAT_MS,
      ...options,
    };
  }

  start(): void {
    for (const pool of this.#pools) {
      pool.onChange(() => this.#schedule(pool));
      this.#schedule(pool);
    }
    this.#heartbeat = setInterval(() => {
      for (const pool of this.#pools) this.#write(pool, true);
    }, this.#options.heartbeatMs);
    this.#heartbeat.unref();
  }

  /**
   * Stops writing and removes this worker's records (a worker that stopped serves nothing); a
   * worker that crashed leaves records that readers ignore once they are old.
   */
  async close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#heartbeat);
    for (const timer of this.#pending.values()) clearTimeout(timer);
    this.#pending.clear();
    await this.#writes;
    for (const pool of this.#pools) {
      try {
        await this.#options.kv.delete(serverHealthKey(pool.config.name, this.#options.worker));
      } catch (error) {
        this.#options.log.warn(
          { err: error, mcp_server: pool.config.name },
          "could not remove server health",
        );
      }
    }
  }

  #schedule(pool: ServerPool): void {
    const name = pool.config.name;
    if (this.#closed || this.#pending.has(name)) return;
    const timer = setTimeout(() => {
      this.#pending.delete(name);
      this.#write(pool, false);
    }, this.#options.debounceMs);
    timer.unref();
    this.#pending.set(name, timer);
  }

  #write(pool: ServerPool, always: boolean): void {
    if (this.#closed) return;
    const health = pool.health();
    const fingerprint = JSON.stringify(health);
    if (!always && this.#written.get(health.server) === fingerprint) return;
    this.#written.set(health.server, fingerprint);
    const record: ServerHealth = {
      ...health,
      worker: this.#options.worker,
      updatedAt: new Date().toISOString(),
    };
    this.#writes = this.#writes.then(async () => {
      try {
        await this.#options.kv.put(
          serverHealthKey(health.server, this.#options.worker),
          encodePayload(ServerHealthSchema, record, "server health"),
        );
      } catch (error) {
        this.#options.log.warn({ err: error, mcp_server: health.server }, "could not record server health");
      }
    });
  }
}
