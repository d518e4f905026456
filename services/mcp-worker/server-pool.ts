import type { Client } from "@modelcontextprotocol/sdk/client/index.js";
import type { Tool } from "@modelcontextprotocol/sdk/types.js";
import { type BulkheadPolicy, BulkheadRejectedError, bulkhead, handleWhen, retry } from "cockatiel";
import { ErrorCode } from "../../schemas/errors.ts";
import type { McpServerConfig } from "../../schemas/mcp.ts";
import { HealthState, type ServerHealth } from "../../schemas/mcp-health.ts";
import { type Logger, LoomError } from "../kit/index.ts";
import { chooseWeighted, isServerFailure, jitteredBackoff, pickReplica } from "./call-policy.ts";
import type { ListKind, McpConnection, McpConnectionOptions } from "./mcp-connection.ts";
import { describeTransport, serverLayout } from "./server-layout.ts";
import { ServerReplica } from "./server-replica.ts";

/** Below this much time left an attempt is not worth starting: the caller has given up by then. */
const MIN_ATTEMPT_MS = 50;

interface PoolVersion {
  name: string;
  weight: number;
  replicas: ServerReplica[];
  cursor: number;
}

export interface PoolOptions {
  log: Logger;
  /** Applied to each replica's entry before it starts (tracing environment, say). */
  prepare?: (replica: McpServerConfig) => McpServerConfig;
  /** Uniform in [0, 1): picks the version of each call. */
  random?: () => number;
  /** Credentials and log level every replica's connection uses. */
  connection?: McpConnectionOptions;
}

export interface RunOptions {
  /** The version to use; one is chosen by weight when absent. */
  version?: string | undefined;
  /** Longest one attempt may take. */
  timeoutMs: number;
  /** Longest all attempts and the waits between them may take together. */
  budgetMs?: number | undefined;
  /** Whether the request may be sent again after a server failure (see safeToRepeat). */
  repeatable: boolean;
  signal?: AbortSignal | undefined;
}

/** A result with the server version that produced it, for records, metrics and stats. */
export interface Routed<T> {
  result: T;
  serverVersion: string;
}

/**
 * Every replica of every version of one MCP server, and the resilience around a call to it:
 * a bulkhead over the server, a version chosen by weight, a replica chosen by load (skipping dead
 * ones and those whose breaker is open), and retries of server failures when repeating is safe.
 */
export class ServerPool {
  readonly config: McpServerConfig;
  readonly #versions: PoolVersion[];
  readonly #bulkhead: BulkheadPolicy;
  readonly #random: () => number;
  readonly #listeners = new Set<() => void>();

  constructor(config: McpServerConfig, options: PoolOptions) {
    this.config = config;
    this.#random = options.random ?? Math.random;
    this.#bulkhead = bulkhead(config.concurrency.max, config.concurrency.queue);
    const changed = () => {
      for (const listener of this.#listeners) listener();
    };
    this.#versions = serverLayout(config).map((version) => ({
      name: version.name,
      weight: version.weight,
      cursor: 0,
      replicas: version.replicas.map(
        (replica, index) =>
          new ServerReplica({
            id: `${version.name}/${index + 1}`,
            config: options.prepare?.(replica) ?? replica,
            log: options.log,
            onChange: changed,
            ...(options.connection === undefined ? {} : { connection: options.connection }),
          }),
      ),
    }));
  }

  /** Starts every replica; each keeps itself running from then on. */
  start(): void {
    for (const replica of this.#replicas()) replica.start();
  }

  /** Called whenever the pool's health may have changed (often: debounce before writing it). */
  onChange(listener: () => void): void {
    this.#listeners.add(listener);
  }

  /** The version the next call goes to, drawn by weight. */
  chooseVersion(): string {
    return chooseWeighted(this.#versions, this.#random()).name;
  }

  /**
   * Runs one MCP request with the server's resilience policies and returns its result with the
   * version that served it. `work` gets the connection of the chosen replica and the time this
   * attempt may take.
   */
  async run<T>(
    work: (connection: McpConnection, attemptTimeoutMs: number) => Promise<T>,
    options: RunOptions,
  ): Promise<Routed<T>> {
    const version = this.#version(options.version ?? this.chooseVersion());
    const deadline = Date.now() + (options.budgetMs ?? Number.POSITIVE_INFINITY);
    let giveUp = false;
    let lastError: unknown;
    const retries = retry(
      handleWhen((error) => options.repeatable && !giveUp && isServerFailure(error)),
      { maxAttempts: this.config.retries.max, backoff: jitteredBackoff(this.config.retries) },
    );
    try {
      const result = await this.#bulkhead.execute(
        () =>
          retries.execute(async ({ attempt, signal }) => {
            const remaining = deadline - Date.now();
            if (attempt > 0 && remaining < MIN_ATTEMPT_MS) {
              giveUp = true;
              throw lastError;
            }
            const replica = pickReplica(version.replicas, version.cursor);
            version.cursor = (version.cursor + 1) % version.replicas.length;
            if (replica === undefined) throw this.#noReplica(version);
            try {
              return await replica.run(
                (connection) => work(connection, Math.max(1, Math.min(options.timeoutMs, remaining))),
                signal,
              );
            } catch (error) {
              lastError = error;
              throw error;
            }
          }, options.signal),
        options.signal,
      );
      return { result, serverVersion: version.name };
    } catch (error) {
      if (error instanceof BulkheadRejectedError) {
        throw new LoomError(
          ErrorCode.SERVER_BUSY,
          `MCP server "${this.config.name}" is at its concurrency limit (${this.config.concurrency.max} in flight, ${this.config.concurrency.queue} queued); try again shortly`,
          { details: { server: this.config.name } },
        );
      }
      throw error;
    }
  }

  /** Lists the tools of the first version (the one a rollout starts from). */
  async listTools(): Promise<Tool[]> {
    const replica = this.#anyReplica(this.#versions[0]);
    await replica.ensureStarted();
    return replica.connection.listTools();
  }

  /** Runs `work` with a connected client of the first version, with the pool's resilience. */
  async withClient<T>(label: string, timeoutMs: number, work: (client: Client) => Promise<T>): Promise<T> {
    const { result } = await this.run(
      (connection, attemptTimeoutMs) => connection.withClient(label, attemptTimeoutMs, work),
      { version: this.#versions[0]?.name, timeoutMs, repeatable: true },
    );
    return result;
  }

  /** Hears the list changes of the first version's replicas (the one whose tools are registered). */
  onListChanged(listener: (kind: ListKind) => void): void {
    for (const replica of this.#versions[0]?.replicas ?? []) replica.connection.onListChanged(listener);
  }

  /** Hears every replica connecting again after it closed (see McpConnection.onReconnected). */
  onReconnected(listener: (client: Client) => void): void {
    for (const replica of this.#replicas()) replica.connection.onReconnected(listener);
  }

  /** Hears the resource updates of every replica: a subscription lives on the one that took it. */
  onResourceUpdated(listener: (uri: string) => void): void {
    for (const replica of this.#replicas()) replica.connection.onResourceUpdated(listener);
  }

  /** The tool as the given version (or the first one) knows it. */
  async findTool(name: string, version?: string): Promise<Tool | undefined> {
    const replica = this.#anyReplica(version === undefined ? this.#versions[0] : this.#version(version));
    await replica.ensureStarted();
    return replica.connection.findTool(name);
  }

  /** Health of every replica, and of the server as a whole, as this worker sees it. */
  health(): Omit<ServerHealth, "worker" | "updatedAt"> {
    const versions = this.#versions.map((version) => ({
      name: version.name,
      weight: version.weight,
      replicas: version.replicas.map((replica) => replica.health()),
    }));
    const states = versions.flatMap((version) => version.replicas.map((replica) => replica.state));
    const state = states.every((each) => each === HealthState.UP)
      ? HealthState.UP
      : states.every((each) => each === HealthState.DOWN)
        ? HealthState.DOWN
        : HealthState.DEGRADED;
    const inFlight = versions.reduce(
      (sum, version) => sum + version.replicas.reduce((each, replica) => each + replica.inFlight, 0),
      0,
    );
    return {
      server: this.config.name,
      state,
      transport: describeTransport(this.config),
      governance: this.config.governance,
      inFlight,
      queued: this.config.concurrency.queue - this.#bulkhead.queueSlots,
      versions,
    };
  }

  async close(): Promise<void> {
    this.#listeners.clear();
    await Promise.all(this.#replicas().map((replica) => replica.close()));
  }

  #replicas(): ServerReplica[] {
    return this.#versions.flatMap((version) => version.replicas);
  }

  #version(name: string): PoolVersion {
    const version = this.#versions.find((each) => each.name === name);
    if (version === undefined) {
      throw new LoomError(
        ErrorCode.UNKNOWN_SERVER,
        `MCP server "${this.config.name}" has no version "${name}"`,
      );
    }
    return version;
  }

  /**
   * A replica to ask for tools: a running one, else one to start; while every breaker is open,
   * the same fast error a call gets (a crashing server is not started for a lookup).
   */
  #anyReplica(version: PoolVersion | undefined): ServerReplica {
    if (version === undefined) throw new Error(`MCP server "${this.config.name}" has no versions`);
    const replica = pickReplica(version.replicas, 0);
    if (replica === undefined) throw this.#noReplica(version);
    return replica;
  }

  /**
   * No replica of the version can take a call: their breakers are open, so the fast typed error
   * names the earliest time one is tried again (or the pool is shutting down).
   */
  #noReplica(version: PoolVersion): LoomError {
    const open = version.replicas.filter((replica) => replica.retryAt > 0);
    if (open.length > 0) {
      return open
        .reduce((best, replica) => (replica.retryAt < best.retryAt ? replica : best))
        .circuitOpenError();
    }
    return new LoomError(ErrorCode.SERVER_UNAVAILABLE, `MCP server "${this.config.name}" is shutting down`, {
      details: { server: this.config.name },
    });
  }
}
