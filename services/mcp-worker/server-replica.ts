import {
  BrokenCircuitError,
  type CircuitBreakerPolicy,
  CircuitState,
  ConsecutiveBreaker,
  circuitBreaker,
  handleWhen,
  type IBackoff,
} from "cockatiel";
import { ErrorCode } from "../../schemas/errors.ts";
import type { McpServerConfig } from "../../schemas/mcp.ts";
import { BreakerState, HealthState, type ReplicaHealth } from "../../schemas/mcp-health.ts";
import { type Logger, LoomError } from "../kit/index.ts";
import { asServerFailure, isServerFailure, jitteredBackoff } from "./call-policy.ts";
import { McpConnection, type McpConnectionOptions } from "./mcp-connection.ts";

export interface ReplicaOptions {
  /** `<version>/<index>`. */
  id: string;
  /** The server's entry with this replica's transport. */
  config: McpServerConfig;
  log: Logger;
  /** Called whenever something shown in health changes. */
  onChange: () => void;
  /** Credentials and log level of the replica's connection. */
  connection?: McpConnectionOptions;
}

/**
 * One process (stdio) or session (http) of a server, with its own circuit breaker. It is started
 * at once and, whenever it dies, started again with growing, jittered delays, so a crashed server
 * is back before the next call needs it. A call that overruns its timeout kills the process: a
 * hung server would otherwise keep every later call waiting too.
 */
export class ServerReplica {
  readonly id: string;
  readonly connection: McpConnection;
  readonly #config: McpServerConfig;
  readonly #log: Logger;
  readonly #onChange: () => void;
  readonly #breaker: CircuitBreakerPolicy;
  #openUntil = 0;
  #up = false;
  #starting: Promise<void> | undefined;
  #attempted = false;
  #restartTimer: NodeJS.Timeout | undefined;
  /** Grows with each restart that did not lead to a good call; reset by one. */
  #restartBackoff: IBackoff<unknown> | undefined;
  #closed = false;
  /** Set by kill(), so the close that follows is not reported as a crash. */
  #killed = false;
  #inFlight = 0;
  #restarts = 0;
  #lastError: string | undefined;
  #lastOkAt: string | undefined;

  constructor(options: ReplicaOptions) {
    this.id = options.id;
    this.#config = options.config;
    this.#log = options.log.child({ mcp_server: options.config.name, replica: options.id });
    this.#onChange = options.onChange;
    this.connection = new McpConnection(
      options.config,
      options.log.child({ replica: options.id }),
      options.connection,
    );
    this.connection.onClosed = () => this.#died();
    this.#breaker = circuitBreaker(handleWhen(isServerFailure), {
      halfOpenAfter: options.config.circuitBreaker.halfOpenAfter,
      breaker: new ConsecutiveBreaker(options.config.circuitBreaker.failures),
    });
    this.#breaker.onBreak(() => {
      this.#openUntil = Date.now() + options.config.circuitBreaker.halfOpenAfter;
      this.#log.warn(
        { retry_at: new Date(this.#openUntil).toISOString() },
        "circuit breaker opened: calls skip this replica until then",
      );
    });
    this.#breaker.onStateChange(() => this.#onChange());
  }

  /** Starts the replica in the background; failures are retried with backoff. */
  start(): void {
    this.ensureStarted().catch(() => undefined);
  }

  /**
   * Resolves once the replica runs. A call that needs it now does not wait out a restart delay:
   * it starts the replica at once (or joins the start under way).
   */
  ensureStarted(): Promise<void> {
    if (this.#up) return Promise.resolve();
    clearTimeout(this.#restartTimer);
    this.#restartTimer = undefined;
    this.#starting ??= this.#start().finally(() => {
      this.#starting = undefined;
    });
    return this.#starting;
  }

  /** Running, and its breaker lets calls through (closed, or open long enough for a trial). */
  get available(): boolean {
    return this.#up && this.#breakerPermits();
  }

  /** Not running, but a call may start it: its breaker does not hold calls back. */
  get startable(): boolean {
    return !this.#closed && !this.#up && this.#breakerPermits();
  }

  get inFlight(): number {
    return this.#inFlight;
  }

  /** When this replica's open breaker lets a call through again (0 when it is not open). */
  get retryAt(): number {
    return this.#breaker.state === CircuitState.Open ? this.#openUntil : 0;
  }

  /**
   * Runs one attempt of an MCP request on this replica, through its breaker. A timeout kills the
   * process (stdio) so that the restart gives a fresh one.
   */
  async run<T>(work: (connection: McpConnection) => Promise<T>, signal?: AbortSignal): Promise<T> {
    this.#inFlight++;
    this.#onChange();
    try {
      const result = await this.#breaker.execute(async () => {
        try {
          await this.ensureStarted();
          return await work(this.connection);
        } catch (error) {
          throw asServerFailure(error, this.#config.name);
        }
      }, signal);
      this.#lastOkAt = new Date().toISOString();
      this.#restartBackoff = undefined;
      return result;
    } catch (error) {
      if (error instanceof BrokenCircuitError) throw this.circuitOpenError();
      if (isServerFailure(error)) {
        this.#lastError = error instanceof Error ? error.message : String(error);
        if (error instanceof LoomError && error.code === ErrorCode.TOOL_TIMEOUT) this.kill("call timed out");
      }
      throw error;
    } finally {
      this.#inFlight--;
      this.#onChange();
    }
  }

  /** The typed fast answer while the breaker is open: which server, and when it is tried again. */
  circuitOpenError(): LoomError {
    const retryAt = new Date(Math.max(this.#openUntil, Date.now())).toISOString();
    return new LoomError(
      ErrorCode.SERVER_UNAVAILABLE,
      `MCP server "${this.#config.name}" is unavailable (circuit open after ${this.#config.circuitBreaker.failures} consecutive failures${this.#lastError === undefined ? "" : `, last: ${this.#lastError}`}); it is tried again at ${retryAt}`,
      { details: { server: this.#config.name, circuit: "open", retryAt } },
    );
  }

  /**
   * Ends the replica's process now (SIGKILL: a hung server may ignore SIGTERM); its close starts
   * the restart. An http replica drops its session and opens a new one.
   */
  kill(reason: string): void {
    const { pid } = this.connection;
    this.#log.warn({ pid, reason }, "killing MCP server replica");
    this.#lastError = `killed: ${reason}`;
    this.#killed = true;
    this.#up = false;
    this.#onChange();
    if (pid !== undefined) {
      try {
        process.kill(pid, "SIGKILL");
        return;
      } catch (error) {
        this.#log.warn({ err: error, pid }, "could not kill the MCP server process");
      }
    }
    this.connection.close().catch((error: unknown) => {
      this.#log.warn({ err: error }, "could not close the MCP server connection");
    });
  }

  health(): ReplicaHealth {
    const breaker = this.#breakerState();
    const state =
      !this.#up || breaker === BreakerState.OPEN
        ? HealthState.DOWN
        : breaker === BreakerState.HALF_OPEN
          ? HealthState.DEGRADED
          : HealthState.UP;
    const { pid, serverInfo } = this.connection;
    return {
      id: this.id,
      state,
      breaker,
      ...(breaker === BreakerState.OPEN ? { retryAt: new Date(this.#openUntil).toISOString() } : {}),
      inFlight: this.#inFlight,
      restarts: this.#restarts,
      ...(this.#lastError === undefined ? {} : { lastError: this.#lastError }),
      ...(this.#lastOkAt === undefined ? {} : { lastOkAt: this.#lastOkAt }),
      ...(pid === undefined || !this.#up ? {} : { pid }),
      ...(serverInfo === undefined ? {} : { serverInfo }),
    };
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#restartTimer);
    await this.connection.close();
  }

  #breakerState(): BreakerState {
    switch (this.#breaker.state) {
      case CircuitState.Closed:
        return BreakerState.CLOSED;
      case CircuitState.HalfOpen:
        return BreakerState.HALF_OPEN;
      default:
        return Date.now() >= this.#openUntil ? BreakerState.HALF_OPEN : BreakerState.OPEN;
    }
  }

  #breakerPermits(): boolean {
    return this.#breaker.state !== CircuitState.Open || Date.now() >= this.#openUntil;
  }

  async #start(): Promise<void> {
    if (this.#closed) {
      throw new LoomError(ErrorCode.SERVER_UNAVAILABLE, `MCP server "${this.#config.name}" is shutting down`);
    }
    if (this.#attempted) this.#restarts++;
    this.#attempted = true;
    try {
      await this.connection.connect();
      this.#up = true;
      this.#log.info({ pid: this.connection.pid, restarts: this.#restarts }, "MCP server replica up");
    } catch (error) {
      this.#lastError = error instanceof Error ? error.message : String(error);
      this.#scheduleRestart();
      throw error;
    } finally {
      this.#onChange();
    }
  }

  #died(): void {
    this.#up = false;
    this.#onChange();
    if (!this.#killed) this.#lastError = "the server exited unexpectedly";
    this.#killed = false;
    if (this.#closed || this.#starting !== undefined) return;
    this.#scheduleRestart();
  }

  #scheduleRestart(): void {
    if (this.#closed || this.#restartTimer !== undefined) return;
    this.#restartBackoff =
      this.#restartBackoff?.next(undefined) ?? jitteredBackoff(this.#config.restart).next();
    const delayMs = Math.round(this.#restartBackoff.duration);
    this.#log.warn(
      { restart_in_ms: delayMs, last_error: this.#lastError },
      "MCP server replica down; restarting",
    );
    this.#restartTimer = setTimeout(() => {
      this.#restartTimer = undefined;
      this.start();
    }, delayMs);
    this.#restartTimer.unref();
  }
}
