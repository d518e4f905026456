import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import type { Transport } from "@modelcontextprotocol/sdk/shared/transport.js";
import {
  type CallToolResult,
  CreateMessageRequestSchema,
  ElicitRequestSchema,
  type GetPromptResult,
  McpError,
  ErrorCode as McpErrorCode,
  type ReadResourceResult,
  type Tool,
} from "@modelcontextprotocol/sdk/types.js";
import { ErrorCode } from "../../schemas/errors.ts";
import type { McpServerConfig } from "../../schemas/mcp.ts";
import { activeContext, inContext, type Logger, LoomError } from "../kit/index.ts";
import { PausableDeadline } from "../kit/pausable-deadline.ts";
import { type CallOrigin, CallsInFlight, type ServerRequestHandlers } from "./server-requests.ts";

const CLIENT_INFO = { name: "loom-mcp-worker", version: "0.1.0" };
const CONNECT_TIMEOUT_MS = 30_000;
/** The tool-name rule of the MCP specification. */
const TOOL_NAME_PATTERN = /^[A-Za-z0-9_.-]{1,128}$/;

/**
 * One MCP server as the worker sees it: connected on demand, reconnected after its transport
 * closes (a crashed stdio server is started again on the next call).
 */
export class McpConnection {
  readonly config: McpServerConfig;
  readonly #log: Logger;
  #client: Promise<Client> | undefined;
  #tools = new Map<string, Tool>();
  readonly #serverRequests: ServerRequestHandlers | undefined;
  readonly #calls = new CallsInFlight();

  /** With `serverRequests`, the client offers sampling and (form) elicitation to the server. */
  constructor(config: McpServerConfig, log: Logger, serverRequests?: ServerRequestHandlers) {
    this.config = config;
    this.#log = log.child({ mcp_server: config.name });
    this.#serverRequests = serverRequests;
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
    origin?: Omit<CallOrigin, "server" | "clock" | "signal" | "traceContext">,
  ): Promise<CallToolResult> {
    const client = await this.#connected();
    if (origin !== undefined && this.#serverRequests !== undefined) {
      return this.#callAnswering(client, name, args, timeoutMs, meta, signal, origin, this.#serverRequests);
    }
    try {
      // An aborted signal makes the SDK send notifications/cancelled to the server.
      return (await client.callTool({ name, arguments: args, _meta: meta }, undefined, {
        timeout: timeoutMs,
        ...(signal === undefined ? {} : { signal }),
      })) as CallToolResult;
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
        async () =>
          (await client.callTool({ name, arguments: args, _meta: meta }, undefined, {
            timeout: timeoutMs + handlers.elicitationTimeoutMs,
            signal: callSignal,
          })) as CallToolResult,
      );
    } catch (error) {
      throw this.#toLoomError(error, name, timeoutMs);
    } finally {
      clock.clear();
    }
  }

  async readResource(uri: string, timeoutMs: number, signal?: AbortSignal): Promise<ReadResourceResult> {
    const client = await this.#connected();
    try {
      return await client.readResource(
        { uri },
        { timeout: timeoutMs, ...(signal === undefined ? {} : { signal }) },
      );
    } catch (error) {
      throw this.#toLoomError(error, uri, timeoutMs);
    }
  }

  async getPrompt(
    name: string,
    args: Record<string, string>,
    timeoutMs: number,
    signal?: AbortSignal,
  ): Promise<GetPromptResult> {
    const client = await this.#connected();
    try {
      return await client.getPrompt(
        { name, arguments: args },
        { timeout: timeoutMs, ...(signal === undefined ? {} : { signal }) },
      );
    } catch (error) {
      throw this.#toLoomError(error, name, timeoutMs);
    }
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
    const handlers = this.#serverRequests;
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
    client.onclose = () => {
      this.#log.warn("MCP server connection closed; the next call reconnects");
      this.#client = undefined;
    };
    try {
      // Starting a server (a process, its runtime, its SDK) can take longer than one call may.
      await client.connect(this.#transport(), { timeout: Math.max(this.config.timeout, CONNECT_TIMEOUT_MS) });
    } catch (cause) {
      throw new LoomError(
        ErrorCode.SERVER_UNAVAILABLE,
        `cannot connect to MCP server "${this.config.name}": ${cause instanceof Error ? cause.message : String(cause)}`,
        { cause },
      );
    }
    this.#log.info({ server_version: client.getServerVersion() }, "connected to MCP server");
    return client;
  }

  #transport(): Transport {
    const { transport } = this.config;
    if (transport.type === "http") {
      return new StreamableHTTPClientTransport(new URL(transport.url), {
        requestInit: { headers: transport.headers },
      });
    }
    const stdio = new StdioClientTransport({
      // "node" means the runtime Loom itself runs on, whatever PATH holds.
      command: transport.command === "node" ? process.execPath : transport.command,
      args: transport.args,
      env: transport.env,
      ...(transport.cwd === undefined ? {} : { cwd: transport.cwd }),
      stderr: "pipe",
    });
    stdio.stderr?.on("data", (chunk: Buffer) => {
      this.#log.debug({ stderr: chunk.toString("utf8").trimEnd() }, "MCP server stderr");
    });
    return stdio;
  }

  #toLoomError(error: unknown, tool: string, timeoutMs: number): LoomError {
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
    if (error instanceof McpError && error.code === McpErrorCode.InvalidParams) {
      return new LoomError(ErrorCode.INVALID_INPUT, `${qualified} refused its arguments: ${error.message}`, {
        cause: error,
      });
    }
    if (error instanceof LoomError) return error;
    return new LoomError(
      ErrorCode.TOOL_ERROR,
      `${qualified} failed: ${error instanceof Error ? error.message : String(error)}`,
      {
        cause: error,
      },
    );
  }
}
