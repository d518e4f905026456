import { ErrorCode } from "../../schemas/errors.ts";
import { CallKind } from "../../schemas/tool-calls.ts";
import { digestOf } from "../kit/digest.ts";
import { toWireError } from "../kit/index.ts";
import type { CallRecords } from "./call-records.ts";
import type { McpConnection } from "./mcp-connection.ts";
import { ReadCache } from "./read-cache.ts";

/** The version named when a server never reported one (it was never reached). */
export const UNKNOWN_VERSION = "unknown";

/** What the worker calls MCP servers through; `around` gives the same methods, observed. */
export type ObservableConnection = Pick<
  McpConnection,
  "config" | "serverVersion" | "callTool" | "readResource" | "getPrompt" | "withClient"
>;

/** One MCP call about to be made, as the worker's statistics and cache see it. */
export interface ObservedCall {
  connection: Pick<ObservableConnection, "config" | "serverVersion">;
  kind: CallKind;
  /** The tool or prompt name, or the resource URI. */
  target: string;
  arguments: Record<string, unknown>;
  runId?: string | undefined;
  stepId?: string | undefined;
  /** The version name A/B routing chose for this call, when it chose one. */
  version?: string | undefined;
}

/**
 * The hook around every MCP call of the worker: it answers cacheable reads from memory, times the
 * call, and appends its record (cached or not) to `LOOM_TOOL_CALLS`. It runs after the grant check,
 * so a cached answer is granted like any other, and before masking and audit, which therefore
 * apply to cached answers too.
 */
export class CallObserver {
  readonly #records: Pick<CallRecords, "append">;
  readonly #caches = new Map<string, ReadCache<unknown>>();

  constructor(records: Pick<CallRecords, "append">) {
    this.#records = records;
  }

  /**
   * The connection's calls, each observed: the drop-in for `connection` at a call site. `version`
   * is the version name A/B routing chose, when it chose one.
   */
  around(
    connection: ObservableConnection,
    step: { runId: string; stepId: string } | undefined,
    version?: string,
  ): Pick<ObservableConnection, "callTool" | "readResource" | "getPrompt" | "withClient"> {
    const base = { connection, runId: step?.runId, stepId: step?.stepId, version };
    return {
      callTool: (name, args, ...rest) =>
        this.observe(
          { ...base, kind: CallKind.TOOL, target: name, arguments: args },
          () => connection.callTool(name, args, ...rest),
          (result) => (result.isError === true ? ErrorCode.TOOL_ERROR : undefined),
        ),
      readResource: (uri, ...rest) =>
        this.observe({ ...base, kind: CallKind.RESOURCE, target: uri, arguments: {} }, () =>
          connection.readResource(uri, ...rest),
        ),
      getPrompt: (name, args, ...rest) =>
        this.observe({ ...base, kind: CallKind.PROMPT, target: name, arguments: args }, () =>
          connection.getPrompt(name, args, ...rest),
        ),
      // Completions are suggestions while typing, not calls worth a record or a cache.
      withClient: (label, timeoutMs, work) => connection.withClient(label, timeoutMs, work),
    };
  }

  /**
   * Runs `fetch` (or answers from the cache) and records the call. `failure` names the error code
   * of an answer that reports a failure without throwing (a tool result with `isError`): it is
   * recorded as that error and never cached.
   */
  async observe<T>(
    call: ObservedCall,
    fetch: () => Promise<T>,
    failure: (value: T) => ErrorCode | undefined = () => undefined,
  ): Promise<T> {
    const started = performance.now();
    const cache = this.#cacheFor(call);
    const key = cache === undefined ? "" : cacheKey(call);
    const hit = cache?.get(key);
    if (hit !== undefined) {
      void this.#record(call, { outcome: "ok", cached: true, version: hit.version, started });
      return hit.value as T;
    }
    let value: T;
    try {
      value = await fetch();
    } catch (error) {
      void this.#record(call, { outcome: toWireError(error).code, cached: false, started });
      throw error;
    }
    const failed = failure(value);
    const version = call.version ?? call.connection.serverVersion ?? UNKNOWN_VERSION;
    if (failed === undefined) cache?.set(key, value, version);
    void this.#record(call, { outcome: failed ?? "ok", cached: false, version, started });
    return value;
  }

  /** The server's cache when this call is a read its config marks cacheable. */
  #cacheFor(call: ObservedCall): ReadCache<unknown> | undefined {
    const config = call.connection.config.cache;
    if (config === undefined) return undefined;
    const cacheable =
      (call.kind === CallKind.TOOL && config.tools.includes(call.target)) ||
      (call.kind === CallKind.RESOURCE && config.resources);
    if (!cacheable) return undefined;
    const server = call.connection.config.name;
    let cache = this.#caches.get(server);
    if (cache === undefined) {
      cache = new ReadCache({
        ttlMs: config.ttl,
        maxEntries: config.max_entries,
        maxBytes: config.max_bytes,
      });
      this.#caches.set(server, cache);
    }
    return cache;
  }

  #record(
    call: ObservedCall,
    result: { outcome: "ok" | ErrorCode; cached: boolean; version?: string; started: number },
  ): Promise<void> {
    return this.#records.append({
      type: "call",
      server: call.connection.config.name,
      target: call.target,
      kind: call.kind,
      serverVersion: result.version ?? call.version ?? call.connection.serverVersion ?? UNKNOWN_VERSION,
      outcome: result.outcome,
      latencyMs: Math.round((performance.now() - result.started) * 1000) / 1000,
      cached: result.cached,
      ...(call.runId === undefined ? {} : { runId: call.runId }),
      ...(call.stepId === undefined ? {} : { stepId: call.stepId }),
      timestamp: new Date().toISOString(),
    });
  }
}

/** Server, operation, target and arguments: equal calls, whatever order their keys came in. */
function cacheKey(call: ObservedCall): string {
  return digestOf([call.connection.config.name, call.kind, call.target, call.arguments]);
}
