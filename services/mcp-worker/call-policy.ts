import { StreamableHTTPError } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import type { Tool } from "@modelcontextprotocol/sdk/types.js";
import { ExponentialBackoff } from "cockatiel";
import { ErrorCode } from "../../schemas/errors.ts";
import type { McpRestart, McpRetry } from "../../schemas/mcp-resilience.ts";
import { IDEMPOTENCY_META_KEY } from "../../schemas/steps.ts";
import { LoomError } from "../kit/index.ts";

/**
 * A failure of the server rather than of the call: it went away, did not answer in time, or its
 * HTTP endpoint failed. Only these count against a replica's circuit breaker and are retried.
 */
export function isServerFailure(error: unknown): boolean {
  return (
    error instanceof LoomError &&
    (error.code === ErrorCode.SERVER_UNAVAILABLE || error.code === ErrorCode.TOOL_TIMEOUT) &&
    error.details?.circuit !== "open"
  );
}

/**
 * Gives a transport failure of an http server its proper code: a refused connection or a 5xx
 * answer means the server is unavailable, which is worth another replica or attempt.
 */
export function asServerFailure(error: unknown, server: string): unknown {
  if (!(error instanceof LoomError) || error.code !== ErrorCode.TOOL_ERROR) return error;
  const { cause } = error;
  const unreachable = cause instanceof TypeError && /fetch failed/i.test(cause.message);
  const failing = cause instanceof StreamableHTTPError && (cause.code ?? 0) >= 500;
  if (!unreachable && !failing) return error;
  return new LoomError(
    ErrorCode.SERVER_UNAVAILABLE,
    `MCP server "${server}" is unreachable: ${error.message}`,
    {
      cause,
    },
  );
}

/**
 * Whether a call may be sent again after a failure that may have reached the server: it carries
 * Loom's idempotency key (the server applies a step once), or the tool says repeating is harmless.
 */
export function safeToRepeat(meta: Record<string, unknown>, tool?: Pick<Tool, "annotations">): boolean {
  if (typeof meta[IDEMPOTENCY_META_KEY] === "string") return true;
  return tool?.annotations?.readOnlyHint === true || tool?.annotations?.idempotentHint === true;
}

/** Exponential backoff with decorrelated jitter, so retries of many callers do not line up. */
export function jitteredBackoff(config: McpRetry | McpRestart): ExponentialBackoff<[number, number]> {
  return new ExponentialBackoff({ initialDelay: config.backoff, maxDelay: config.maxBackoff });
}

export interface Weighted {
  name: string;
  weight: number;
}

/** Picks one entry with probability weight / total; `random` is in [0, 1). */
export function chooseWeighted<T extends Weighted>(entries: readonly T[], random: number): T {
  const total = entries.reduce((sum, entry) => sum + entry.weight, 0);
  let point = random * total;
  for (const entry of entries) {
    if (entry.weight <= 0) continue;
    if (point < entry.weight) return entry;
    point -= entry.weight;
  }
  const last = entries.findLast((entry) => entry.weight > 0);
  if (last === undefined) throw new Error("no entry with a weight above 0");
  return last;
}

export interface Candidate {
  /** Running, and its breaker lets calls through. */
  available: boolean;
  /** Not running (starting, or waiting to restart), and its breaker lets calls through. */
  startable: boolean;
  inFlight: number;
}

/**
 * The replica for the next call: among available ones the least busy, ties going round robin from
 * `cursor` so that idle replicas share the calls; failing that one that can be started now.
 * Undefined when every breaker holds calls back.
 */
export function pickReplica<T extends Candidate>(replicas: readonly T[], cursor: number): T | undefined {
  let best: T | undefined;
  let startable: T | undefined;
  for (let offset = 0; offset < replicas.length; offset++) {
    const replica = replicas[(cursor + offset) % replicas.length];
    if (replica === undefined) continue;
    if (replica.startable) startable ??= replica;
    if (!replica.available) continue;
    if (best === undefined || replica.inFlight < best.inFlight) best = replica;
  }
  return best ?? startable;
}
