import type { Tool } from "@modelcontextprotocol/sdk/types.js";
import type { KV } from "@nats-io/kv";
import { type McpServerConfig, type ToolDescriptor, ToolDescriptorSchema } from "../../schemas/mcp.ts";
import { canonicalJson } from "../kit/digest.ts";
import { encodePayload, type Logger } from "../kit/index.ts";

/** Tool names are limited to KV-safe characters by the worker, so `<server>.<tool>` is the key as is. */
export function toolKey(server: string, tool: string): string {
  return `${server}.${tool}`;
}

/**
 * Makes KV `loom_tools` hold exactly a server's current tools, with its governance metadata: new
 * tools are added, changed ones rewritten, tools the server no longer lists deleted.
 */
export async function recordTools(kv: KV, server: McpServerConfig, tools: Tool[]): Promise<void> {
  const updatedAt = new Date().toISOString();
  const listed = new Set<string>();
  for (const tool of tools) {
    const key = toolKey(server.name, tool.name);
    listed.add(key);
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
    const current = await kv.get(key);
    if (current?.operation === "PUT" && sameTool(current.json<ToolDescriptor>(), descriptor)) continue;
    await kv.put(key, encodePayload(ToolDescriptorSchema, descriptor, "tool descriptor"));
  }
  // Server names are slugs (no dots), so `<server>.>` holds this server's tools and no other's.
  for await (const key of await kv.keys(`${server.name}.>`)) {
    if (!listed.has(key)) await kv.delete(key);
  }
}

/** Equal but for when it was recorded: rewriting it would only churn the bucket. */
function sameTool(a: ToolDescriptor, b: ToolDescriptor): boolean {
  return canonicalJson({ ...a, updatedAt: "" }) === canonicalJson({ ...b, updatedAt: "" });
}

/**
 * Records a server's tools again whenever it sends notifications/tools/list_changed, so
 * `loom tools list` and the worker follow it without a restart.
 */
export function recordOnListChanged(
  connection: {
    config: McpServerConfig;
    listTools(): Promise<Tool[]>;
    onListChanged(listener: (kind: "tools" | "resources" | "prompts") => void): void;
  },
  record: (tools: Tool[]) => Promise<void>,
  log: Logger,
): void {
  connection.onListChanged((kind) => {
    if (kind !== "tools") return;
    connection
      .listTools()
      .then(record)
      .then(
        () => log.info({ mcp_server: connection.config.name }, "tool list changed; loom_tools updated"),
        (error: unknown) =>
          log.error(
            { err: error, mcp_server: connection.config.name },
            "cannot record the changed tool list",
          ),
      );
  });
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
