import type { Tool } from "@modelcontextprotocol/sdk/types.js";
import type { KV } from "@nats-io/kv";
import { type McpServerConfig, type ToolDescriptor, ToolDescriptorSchema } from "../../schemas/mcp.ts";
import { encodePayload } from "../kit/index.ts";

/** KV keys allow letters, digits, `-`, `_`, `=`, `/` and `.`; anything else in a tool name becomes `_`. */
export function toolKey(server: string, tool: string): string {
  return `${server}.${tool}`.replace(/[^-/_=.a-zA-Z0-9]/g, "_");
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
