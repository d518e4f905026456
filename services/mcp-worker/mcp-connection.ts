import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import type { Transport } from "@modelcontextprotocol/sdk/shared/transport.js";
import {
  type CallToolResult,
  type GetPromptResult,
  McpError,
  ErrorCode as McpErrorCode,
  type ReadResourceResult,
  type Tool,
} from "@modelcontextprotocol/sdk/types.js";
import { ErrorCode } from "../../schemas/errors.ts";
import type { McpServerConfig } from "../../schemas/mcp.ts";
import { type Logger, LoomError } from "../kit/index.ts";

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

  constructor(config: McpServerConfig, log: Logger) {
    this.config = config;
    this.#log = log.child({ mcp_server: config.name });
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
  ): Promise<CallToolResult> {
    const client = await this.#connected();
    if (this.#tools.get(name)?.execution?.taskSupport === "required") {
      return callAsTask(client, { name, arguments: args, _meta: meta }, timeoutMs, signal).catch(
        (error: unknown) => {
          throw this.#toLoomError(error, name, timeoutMs);
        },
      );
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
    const client = new Client(CLIENT_INFO);
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

/**
 * A tool that runs only as an MCP task (`execution.taskSupport: "required"`) cannot be called
 * plainly: the SDK creates the task, polls it and fetches its result, all within the step's call.
 */
async function callAsTask(
  client: Client,
  params: { name: string; arguments: Record<string, unknown>; _meta: Record<string, unknown> },
  timeoutMs: number,
  signal: AbortSignal | undefined,
): Promise<CallToolResult> {
  // Each request (create, poll, fetch the result) is bounded by the call's timeout; an aborted
  // signal stops the polling and tells the server.
  const options = { timeout: timeoutMs, ...(signal === undefined ? {} : { signal }) };
  for await (const message of client.experimental.tasks.callToolStream(params, undefined, options)) {
    if (message.type === "result") return message.result as CallToolResult;
    if (message.type === "error") throw message.error;
  }
  throw new McpError(McpErrorCode.InternalError, `the task of ${params.name} ended without a result`);
}
