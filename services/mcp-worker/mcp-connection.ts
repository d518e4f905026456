import { randomUUID } from "node:crypto";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import {
  StreamableHTTPClientTransport,
  StreamableHTTPError,
} from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import type { RequestOptions } from "@modelcontextprotocol/sdk/shared/protocol.js";
import type { Transport } from "@modelcontextprotocol/sdk/shared/transport.js";
import {
  type CallToolResult,
  CallToolResultSchema,
  CreateMessageRequestSchema,
  ElicitRequestSchema,
  type GetPromptResult,
  type JSONRPCMessage,
  type LoggingLevel,
  type LoggingMessageNotification,
  LoggingMessageNotificationSchema,
  McpError,
  ErrorCode as McpErrorCode,
  type Progress,
  ProgressNotificationSchema,
  PromptListChangedNotificationSchema,
  type ReadResourceResult,
  ResourceListChangedNotificationSchema,
  ResourceUpdatedNotificationSchema,
  type Tool,
  ToolListChangedNotificationSchema,
} from "@modelcontextprotocol/sdk/types.js";
import { ErrorCode } from "../../schemas/errors.ts";
import type { McpServerConfig } from "../../schemas/mcp.ts";
import { activeContext, inContext, type Logger, LoomError } from "../kit/index.ts";
import { PausableDeadline } from "../kit/pausable-deadline.ts";
import { type CallOrigin, CallsInFlight, type ServerRequestHandlers } from "./server-requests.ts";
import { authorizedFetch, type TokenSource } from "./token-source.ts";
import { HeaderWebSocketTransport } from "./websocket-transport.ts";

const CLIENT_INFO = { name: "loom-mcp-worker", version: "0.1.0" };
const CONNECT_TIMEOUT_MS = 30_000;
/** The tool-name rule of the MCP specification. */
const TOOL_NAME_PATTERN = /^[A-Za-z0-9_.-]{1,128}$/;

/** What one caller hears while its request is in flight. */
export interface CallObserver {
  onProgress?(progress: Progress): void;
  /**
   * A log message the server sent while the call was in flight. MCP does not tie log messages to
   * requests, so every call in flight on the server hears it.
   */
  onLog?(message: LoggingMessageNotification["params"]): void;
}

/** Which of a server's lists changed (`notifications/<kind>/list_changed`). */
export type ListKind = "tools" | "resources" | "prompts";

export interface McpConnectionOptions {
  /** Access tokens for a remote server whose config has `auth`. */
  tokens?: TokenSource | undefined;
  /** Least severe log level asked of a server that has the logging capability. */
  logLevel?: LoggingLevel | undefined;
  /** With these, the client offers sampling and (form) elicitation to the server. */
  serverRequests?: ServerRequestHandlers | undefined;
}

/** An aborted signal makes the SDK send notifications/cancelled to the server. */
function requestOptions(timeoutMs: number, signal: AbortSignal | undefined): RequestOptions {
  return { timeout: timeoutMs, ...(signal === undefined ? {} : { signal }) };
}

/** MCP log levels as pino's, for the worker's own log line. */
export const PINO_LEVEL = {
  debug: "debug",
  info: "info",
  notice: "info",
  warning: "warn",
  error: "error",
  critical: "error",
  alert: "error",
  emergency: "error",
} as const satisfies Record<LoggingLevel, string>;

/**
 * One MCP server as the worker sees it: connected on demand, reconnected after its transport
 * closes (a crashed stdio server is started again on the next call).
 */
export class McpConnection {
  readonly config: McpServerConfig;
  readonly #log: Logger;
  #client: Promise<Client> | undefined;
  #tools = new Map<string, Tool>();
  readonly #options: McpConnectionOptions;
  readonly #observers = new Set<CallObserver>();
  /** Progress callbacks of the requests in flight, by the progress token each request carries. */
  readonly #progress = new Map<string, (progress: Progress) => void>();
  readonly #listChanged = new Set<(kind: ListKind) => void>();
  readonly #resourceUpdated = new Set<(uri: string) => void>();
  readonly #reconnected = new Set<(client: Client) => void>();
  /** Connections made so far: every one after the first is a reconnect (the server restarted). */
  #connects = 0;
  readonly #calls = new CallsInFlight();
  #stdio: StdioClientTransport | undefined;
  #serverInfo: { name: string; version: string } | undefined;
  /** Called whenever the connection closes (the server exited, was killed, or close() ran). */
  onClosed: (() => void) | undefined;

  constructor(config: McpServerConfig, log: Logger, options: McpConnectionOptions = {}) {
    this.config = config;
    this.#log = log.child({ mcp_server: config.name });
    this.#options = options;
  }

  /**
   * Calls `listener` when the server says one of its lists changed (tools, resources, prompts), so
   * registries can record the new list without a restart.
   */
  onListChanged(listener: (kind: ListKind) => void): void {
    this.#listChanged.add(listener);
  }

  /**
   * Calls `listener` with the new client each time the connection is made again (a stdio server
   * restarted, an http session was replaced), so what the server forgot can be asked again.
   */
  onReconnected(listener: (client: Client) => void): void {
    this.#reconnected.add(listener);
  }

  /** Calls `listener` when the server says a resource subscribed to changed (`notifications/resources/updated`). */
  onResourceUpdated(listener: (uri: string) => void): void {
    this.#resourceUpdated.add(listener);
  }

  /**
   * Connects (if not connected) and returns the server's tools. A tool whose name strays from the
   * MCP naming rule is left out: names are matched by policy globs and used as registry keys.
   */
  async listTools(): Promise<Tool[]> {
    const client = await this.#connected();
    const { tools } = await client.listTools();
    const usable = tools.filter((tool) => {
      if (TOOL_NAME_PATTERN.test(tool.name)) return true;
      this.#log.warn({ tool: tool.name }, "tool refused: names must be 1-128 of A-Z a-z 0-9 _ - .");
      return false;
    });
    this.#tools = new Map(usable.map((tool) => [tool.name, tool]));
    return usable;
  }

  /** The version the server reported when it was last connected (its `serverInfo.version`). */
  get serverVersion(): string | undefined {
    return this.#serverInfo?.version;
  }

  /** The tool by name, listing the server's tools again if it is not known yet (it may be new). */
  async findTool(name: string): Promise<Tool | undefined> {
    if (!this.#tools.has(name)) await this.listTools();
    return this.#tools.get(name);
  }

  async callTool(
    name: string,
    args: Record<string, unknown>,
    timeoutMs: number,
    meta: Record<string, unknown> = {},
    signal?: AbortSignal,
    observer?: CallObserver,
    origin?: Omit<CallOrigin, "server" | "clock" | "signal" | "traceContext">,
  ): Promise<CallToolResult> {
    const client = await this.#connected();
    const handlers = this.#options.serverRequests;
    if (origin !== undefined && handlers !== undefined) {
      return this.#callAnswering(client, name, args, timeoutMs, meta, signal, observer, origin, handlers);
    }
    try {
      if (this.#tools.get(name)?.execution?.taskSupport === "required") {
        return await this.#observed(observer, (progressMeta) =>
          callAsTask(
            client,
            { name, arguments: args, _meta: { ...meta, ...progressMeta } },
            requestOptions(timeoutMs, signal),
          ),
        );
      }
      // A plain request rather than client.callTool: the worker validates structuredContent
      // against the outputSchema itself and answers a typed TOOL_OUTPUT_INVALID.
      return await this.#observed(observer, (progressMeta) =>
        client.request(
          { method: "tools/call", params: { name, arguments: args, _meta: { ...meta, ...progressMeta } } },
          CallToolResultSchema,
          requestOptions(timeoutMs, signal),
        ),
      );
    } catch (error) {
      throw this.#toLoomError(error, name, timeoutMs);
    }
  }

  /**
   * A call during which the server may ask for sampling or elicitation. Its timeout is Loom's own
   * clock, paused while a person answers; the SDK's timeout stays as the hard bound: the call's
   * timeout plus the elicitation budget.
   */
  async #callAnswering(
    client: Client,
    name: string,
    args: Record<string, unknown>,
    timeoutMs: number,
    meta: Record<string, unknown>,
    signal: AbortSignal | undefined,
    observer: CallObserver | undefined,
    origin: Omit<CallOrigin, "server" | "clock" | "signal" | "traceContext">,
    handlers: ServerRequestHandlers,
  ): Promise<CallToolResult> {
    const clock = new PausableDeadline(
      timeoutMs,
      () => new McpError(McpErrorCode.RequestTimeout, `Request timed out after ${timeoutMs} ms`),
    );
    const abandoned = new AbortController();
    const callSignal = AbortSignal.any([
      clock.signal,
      abandoned.signal,
      ...(signal === undefined ? [] : [signal]),
    ]);
    try {
      return await this.#calls.during(
        { ...origin, server: this.config.name, clock, signal: callSignal, traceContext: activeContext() },
        () =>
          abandoned.abort(
            new McpError(McpErrorCode.ConnectionClosed, "a newer call of the same task took this one over"),
          ),
        () =>
          this.#observed(observer, (progressMeta) => {
            const params = { name, arguments: args, _meta: { ...meta, ...progressMeta } };
            const options = { timeout: timeoutMs + handlers.elicitationTimeoutMs, signal: callSignal };
            // A task-required tool runs as a task here too (a server may ask while it runs).
            return this.#tools.get(name)?.execution?.taskSupport === "required"
              ? callAsTask(client, params, options)
              : client.request({ method: "tools/call", params }, CallToolResultSchema, options);
          }),
      );
    } catch (error) {
      throw this.#toLoomError(error, name, timeoutMs);
    } finally {
      clock.clear();
    }
  }

  async readResource(
    uri: string,
    timeoutMs: number,
    signal?: AbortSignal,
    observer?: CallObserver,
  ): Promise<ReadResourceResult> {
    const client = await this.#connected();
    try {
      return await this.#observed(observer, (progressMeta) =>
        client.readResource({ uri, _meta: progressMeta }, requestOptions(timeoutMs, signal)),
      );
    } catch (error) {
      throw this.#toLoomError(error, uri, timeoutMs, "read");
    }
  }

  async getPrompt(
    name: string,
    args: Record<string, string>,
    timeoutMs: number,
    signal?: AbortSignal,
    observer?: CallObserver,
  ): Promise<GetPromptResult> {
    const client = await this.#connected();
    try {
      return await this.#observed(observer, (progressMeta) =>
        client.getPrompt({ name, arguments: args, _meta: progressMeta }, requestOptions(timeoutMs, signal)),
      );
    } catch (error) {
      throw this.#toLoomError(error, name, timeoutMs);
    }
  }

  /**
   * Runs `work` with the connected client, its failures typed as a call's are: for what needs the
   * client itself (listing the catalog, completions). `label` names the operation in errors.
   */
  async withClient<T>(label: string, timeoutMs: number, work: (client: Client) => Promise<T>): Promise<T> {
    const client = await this.#connected();
    try {
      return await work(client);
    } catch (error) {
      throw this.#toLoomError(error, label, timeoutMs);
    }
  }

  /**
   * Runs `work` with `observer` hearing the server's log messages meanwhile and, through the
   * progress token `work` puts in its request's `_meta`, the request's progress.
   */
  async #observed<T>(
    observer: CallObserver | undefined,
    work: (progressMeta: { progressToken?: string }) => Promise<T>,
  ): Promise<T> {
    if (observer === undefined) return work({});
    const onProgress = observer.onProgress;
    const progressToken = onProgress === undefined ? undefined : randomUUID();
    this.#observers.add(observer);
    if (progressToken !== undefined && onProgress !== undefined)
      this.#progress.set(progressToken, onProgress);
    try {
      return await work(progressToken === undefined ? {} : { progressToken });
    } finally {
      this.#observers.delete(observer);
      if (progressToken !== undefined) this.#progress.delete(progressToken);
    }
  }

  /**
   * Progress and log notifications, taken from the transport before the SDK sees them. The SDK
   * handles notifications a microtask after they arrive but responses at once, so a report sent
   * just before the result (the final 100%) would reach a call that had already ended.
   */
  #hear(message: JSONRPCMessage): void {
    if (!("method" in message) || "id" in message) return;
    const progress = ProgressNotificationSchema.safeParse(message);
    if (progress.success) {
      const { progressToken, ...reported } = progress.data.params;
      this.#progress.get(String(progressToken))?.(reported);
      return;
    }
    const logged = LoggingMessageNotificationSchema.safeParse(message);
    if (!logged.success) return;
    const { params } = logged.data;
    if (this.#observers.size === 0) {
      this.#log[PINO_LEVEL[params.level]]({ mcp_logger: params.logger, data: params.data }, "MCP server log");
    }
    for (const observer of this.#observers) observer.onLog?.(params);
  }

  /** Starts the server (stdio) or opens the session (http) if that has not happened yet. */
  async connect(): Promise<void> {
    await this.#connected();
  }

  /** The process of a stdio server while it runs. */
  get pid(): number | undefined {
    return this.#stdio?.pid ?? undefined;
  }

  /** What the connected server says it is. */
  get serverInfo(): { name: string; version: string } | undefined {
    return this.#serverInfo;
  }

  async close(): Promise<void> {
    const client = this.#client;
    this.#client = undefined;
    if (client !== undefined) await (await client.catch(() => undefined))?.close();
  }

  #connected(): Promise<Client> {
    this.#client ??= this.#connect().catch((error: unknown) => {
      this.#client = undefined;
      throw error;
    });
    return this.#client;
  }

  async #connect(): Promise<Client> {
    let client: Client;
    try {
      client = await this.#open();
    } catch (cause) {
      if (cause instanceof LoomError) throw cause;
      if (cause instanceof StreamableHTTPError && (cause.code === 401 || cause.code === 403)) {
        throw new LoomError(
          ErrorCode.SERVER_AUTH_FAILED,
          `MCP server "${this.config.name}" refused the worker (HTTP ${cause.code}); give its entry an auth block`,
          { cause },
        );
      }
      throw new LoomError(
        ErrorCode.SERVER_UNAVAILABLE,
        `cannot connect to MCP server "${this.config.name}": ${cause instanceof Error ? cause.message : String(cause)}`,
        { cause },
      );
    }
    const info = client.getServerVersion();
    this.#serverInfo = info === undefined ? undefined : { name: info.name, version: info.version };
    this.#log.info({ server_version: info }, "connected to MCP server");
    const level = this.#options.logLevel;
    if (level !== undefined && client.getServerCapabilities()?.logging !== undefined) {
      await client.setLoggingLevel(level).catch((error: unknown) => {
        this.#log.warn(
          { err: error, level },
          "MCP server refused logging/setLevel; it logs at its own level",
        );
      });
    }
    return client;
  }

  async #open(): Promise<Client> {
    const tokens = this.#options.tokens;
    try {
      return await this.#openOnce();
    } catch (error) {
      // A WebSocket upgrade refused for an expired token looks like any refusal: one more try
      // with a fresh token. (Over HTTP, authorizedFetch already retried on 401.)
      if (tokens === undefined || this.config.transport.type !== "websocket" || error instanceof LoomError)
        throw error;
      tokens.invalidate();
      return this.#openOnce();
    }
  }

  async #openOnce(): Promise<Client> {
    const handlers = this.#options.serverRequests;
    const client = new Client(
      CLIENT_INFO,
      handlers === undefined ? undefined : { capabilities: { sampling: {}, elicitation: { form: {} } } },
    );
    if (handlers !== undefined) {
      client.setRequestHandler(CreateMessageRequestSchema, (request) => {
        const origin = this.#calls.originOf(this.config.name, request.method);
        return inContext(origin.traceContext, () => handlers.onSampling(request.params, origin));
      });
      client.setRequestHandler(ElicitRequestSchema, (request) => {
        const origin = this.#calls.originOf(this.config.name, request.method);
        return inContext(origin.traceContext, () => handlers.onElicitation(request.params, origin));
      });
    }
    let live = false;
    client.onclose = () => {
      // A client that never finished connecting is not the current one: its failure is reported.
      if (!live) return;
      this.#log.warn("MCP server connection closed; the next call reconnects");
      this.#client = undefined;
      this.onClosed?.();
    };
    this.#listenToNotifications(client);
    const transport = await this.#transport();
    // Set before connecting: the SDK chains its own handler after this one.
    transport.onmessage = (message) => this.#hear(message);
    // Starting a server (a process, its runtime, its SDK) can take longer than one call may.
    await client.connect(transport, {
      timeout: Math.max(this.config.timeout, CONNECT_TIMEOUT_MS),
    });
    live = true;
    if (this.#connects++ > 0) for (const listener of this.#reconnected) listener(client);
    return client;
  }

  /** List changes and resource updates go to listeners (progress and log messages are heard in #hear). */
  #listenToNotifications(client: Client): void {
    const lists = [
      ["tools", ToolListChangedNotificationSchema],
      ["resources", ResourceListChangedNotificationSchema],
      ["prompts", PromptListChangedNotificationSchema],
    ] as const;
    for (const [kind, schema] of lists) {
      client.setNotificationHandler(schema, () => {
        this.#log.info({ list: kind }, "MCP server list changed");
        for (const listener of this.#listChanged) listener(kind);
      });
    }
    client.setNotificationHandler(ResourceUpdatedNotificationSchema, (notification) => {
      for (const listener of this.#resourceUpdated) listener(notification.params.uri);
    });
  }

  async #transport(): Promise<Transport> {
    const { transport } = this.config;
    const tokens = this.#options.tokens;
    if (transport.type === "http") {
      return new StreamableHTTPClientTransport(new URL(transport.url), {
        requestInit: { headers: transport.headers },
        ...(tokens === undefined ? {} : { fetch: authorizedFetch(tokens, this.config.name) }),
      });
    }
    if (transport.type === "websocket") {
      const headers = { ...transport.headers };
      if (tokens !== undefined) headers.authorization = `Bearer ${await tokens.token()}`;
      return new HeaderWebSocketTransport(new URL(transport.url), headers);
    }
    const stdio = new StdioClientTransport({
      // "node" means the runtime Loom itself runs on, whatever PATH holds.
      command: transport.command === "node" ? process.execPath : transport.command,
      args: transport.args,
      env: transport.env,
      ...(transport.cwd === undefined ? {} : { cwd: transport.cwd }),
      stderr: "pipe",
    });
    this.#stdio = stdio;
    stdio.stderr?.on("data", (chunk: Buffer) => {
      this.#log.debug({ stderr: chunk.toString("utf8").trimEnd() }, "MCP server stderr");
    });
    return stdio;
  }

  /** `operation` is what `tool` names: a tool or prompt called with arguments, or a resource read. */
  #toLoomError(
    error: unknown,
    tool: string,
    timeoutMs: number,
    operation: "call" | "read" = "call",
  ): LoomError {
    const qualified = `${this.config.name}.${tool}`;
    if (error instanceof McpError && error.code === McpErrorCode.RequestTimeout) {
      return new LoomError(ErrorCode.TOOL_TIMEOUT, `${qualified} did not answer within ${timeoutMs} ms`, {
        cause: error,
      });
    }
    if (error instanceof McpError && error.code === McpErrorCode.ConnectionClosed) {
      return new LoomError(
        ErrorCode.SERVER_UNAVAILABLE,
        `MCP server "${this.config.name}" went away during ${qualified}`,
        {
          cause: error,
        },
      );
    }
    if (
      operation === "read" &&
      error instanceof McpError &&
      (error.code === McpErrorCode.InvalidParams || error.code === RESOURCE_NOT_FOUND)
    ) {
      return new LoomError(
        ErrorCode.INVALID_INPUT,
        `${this.config.name} could not read ${tool}: ${upstreamMessage(error)}`,
        { cause: error },
      );
    }
    if (error instanceof McpError && error.code === McpErrorCode.InvalidParams) {
      return new LoomError(
        ErrorCode.INVALID_INPUT,
        `${qualified} refused its arguments: ${upstreamMessage(error)}`,
        {
          cause: error,
        },
      );
    }
    if (error instanceof LoomError) return error;
    return new LoomError(ErrorCode.TOOL_ERROR, `${qualified} failed: ${upstreamMessage(error)}`, {
      cause: error,
    });
  }
}

/** The MCP error code the specification gives an unknown resource (the SDK has no constant for it). */
const RESOURCE_NOT_FOUND = -32002;

/**
 * What the server said: the SDK puts `MCP error <code>: ` before an McpError's message on the
 * server and again on the client, which says nothing the typed error does not.
 */
function upstreamMessage(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  return error instanceof McpError ? message.replace(/^(MCP error -?\d+: )+/, "") : message;
}

/**
 * A tool that runs only as an MCP task (`execution.taskSupport: "required"`) cannot be called
 * plainly: the SDK creates the task, polls it and fetches its result, all within the step's call.
 */
async function callAsTask(
  client: Client,
  params: { name: string; arguments: Record<string, unknown>; _meta: Record<string, unknown> },
  // Each request (create, poll, fetch the result) is bounded by the call's timeout; an aborted
  // signal stops the polling and tells the server.
  options: RequestOptions,
): Promise<CallToolResult> {
  for await (const message of client.experimental.tasks.callToolStream(params, undefined, options)) {
    if (message.type === "result") return message.result as CallToolResult;
    if (message.type === "error") throw message.error;
  }
  throw new McpError(McpErrorCode.InternalError, `the task of ${params.name} ended without a result`);
}
