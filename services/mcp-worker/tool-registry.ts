import type { Tool } from "@modelcontextprotocol/sdk/types.js";
import type { KV } from "@nats-io/kv";
import { type McpServerConfig, type ToolDescriptor, ToolDescriptorSchema } from "../../schemas/mcp.ts";
import { encodePayload, type Logger } from "../kit/index.ts";

/** Tool names are limited to KV-safe characters by the worker, so `<server>.<tool>` is the key as is. */
export function toolKey(server: string, tool: string): string {
  return `${server}.${tool}`;
}

/** Records a server's tools, with its governance metadata, in KV `loom_tools`. */
export async function recordTools(kv: KV, server: McpServerConfig, tools: Tool[]): Promise<void> {
  const updatedAt = new Date().toISOString();
  for (const tool of tools) {
    const descriptor: ToolDescriptor = {
      server: server.name,
      name: tool.name,
      ...(tool.title === undefined ? {} : { title: tool.title }),
      ...(tool.description === undefined ? {} : { description: tool.description }),
      inputSchema: tool.inputSchema,
      ...(tool.outputSchema === undefined ? {} : { outputSchema: tool.outputSchema }),
      ...(tool.annotations === undefined ? {} : { annotations: tool.annotations }),
      governance: server.governance,
      updatedAt,
    };
    await kv.put(
      toolKey(server.name, tool.name),
      encodePayload(ToolDescriptorSchema, descriptor, "tool descriptor"),
    );
  }
}

/** First retry delay for a server that could not be reached; doubled up to a minute. */
const FIRST_RETRY_MS = 1_000;
const MAX_RETRY_MS = 60_000;

/**
 * Lists a server's tools and records them; a server not reachable yet (slow to start, down) is
 * tried again in the background with backoff, so its tools appear once it comes up.
 */
export async function registerUntilReachable(
  connection: { config: McpServerConfig; listTools(): Promise<Tool[]> },
  record: (tools: Tool[]) => Promise<void>,
  log: Logger,
): Promise<void> {
  const attempt = async (delayMs: number): Promise<void> => {
    try {
      await record(await connection.listTools());
    } catch (error) {
      log.error(
        { err: error, mcp_server: connection.config.name, retry_in_ms: delayMs },
        "MCP server not reachable; trying again",
      );
      setTimeout(() => void attempt(Math.min(delayMs * 2, MAX_RETRY_MS)), delayMs).unref();
    }
  };
  await attempt(FIRST_RETRY_MS);
}
