import type { Tool } from "@modelcontextprotocol/sdk/types.js";
import type { KV } from "@nats-io/kv";
import { type McpServerConfig, type ToolDescriptor, ToolDescriptorSchema } from "../../schemas/mcp.ts";
import { encodePayload } from "../kit/index.ts";

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
