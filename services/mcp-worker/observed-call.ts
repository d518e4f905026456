import type { ExecutedCall } from "../../schemas/audit.ts";
import { ErrorCode } from "../../schemas/errors.ts";
import { CallKind } from "../../schemas/tool-calls.ts";
import { digestOf } from "../kit/digest.ts";
import type { McpConnection } from "./mcp-connection.ts";
import { ReadCache } from "./read-cache.ts";

/** The version named when a server never reported one (it was never reached). */
export const UNKNOWN_VERSION = "unknown";

/** What the worker calls MCP servers through; `around` gives the same methods, observed. */
export type ObservableConnection = Pick<
  McpConnection,
  "config" | "serverVersion" | "callTool" | "readResource" | "getPrompt" | "withClient"
>;

/** One MCP call about to be made, as the worker's cache and its task's execution record see it. */
export interface ObservedCall {
  connection: Pick<ObservableConnection, "config" | "serverVersion">;
  kind: CallKind;
  /** The tool or prompt name, or the resource URI. */
  target: string;
  arguments: Record<string, unknown>;
  /** The version name A/B routing chose for this call, when it chose one. */
  version?: string | undefined;
  /** The task's note of its call, for its execution record: which version served it, from the cache or not. */
  executed: ExecutedCall;
}

/**
 * The hook around every MCP call of the worker: it answers cacheable reads from memory and notes,
 * for the task's execution record, which server version served the call and whether the cache
 * did (`loom tools stats` counts calls from those records). It runs after the grant check, so a
 * cached answer is granted like any other, and before masking and audit, which therefore apply to
 * cached answers too.
 */
export class CallObserver {
  readonly #caches = new Map<string, ReadCache<unknown>>();

  /**
   * The connection's calls, each observed: the drop-in for `connection` at a call site. `executed`
   * is the task's note of its call; `version` the version name A/B routing chose, when it chose one.
   */
  around(
    connection: ObservableConnection,
    executed: ExecutedCall,
    version?: string,
  ): Pick<ObservableConnection, "callTool" | "readResource" | "getPrompt" | "withClient"> {
    const base = { connection, executed, version };
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
   * Runs `fetch` (or answers from the cache) and notes the call. `failure` names the error code of
   * an answer that reports a failure without throwing (a tool result with `isError`): it is never
   * cached.
   */
  async observe<T>(
    call: ObservedCall,
    fetch: () => Promise<T>,
    failure: (value: T) => ErrorCode | undefined = () => undefined,
  ): Promise<T> {
    const cache = this.#cacheFor(call);
    const key = cache === undefined ? "" : cacheKey(call);
    const hit = cache?.get(key);
    if (hit !== undefined) {
      note(call, hit.version, true);
      return hit.value as T;
    }
    let value: T;
    try {
      value = await fetch();
    } finally {
      // The version the server reports is known once it answered (or failed to).
      note(call, call.version ?? call.connection.serverVersion ?? UNKNOWN_VERSION, false);
    }
    if (failure(value) === undefined) cache?.set(key, value, call.executed.serverVersion ?? UNKNOWN_VERSION);
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
}

/** The task's last call attempt is the one its execution record names. */
function note(call: ObservedCall, serverVersion: string, cached: boolean): void {
  call.executed.serverVersion = serverVersion;
  call.executed.cached = cached;
}

/** Server, operation, target and arguments: equal calls, whatever order their keys came in. */
function cacheKey(call: ObservedCall): string {
  return digestOf([call.connection.config.name, call.kind, call.target, call.arguments]);
}
