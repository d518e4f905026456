import { z } from "zod";
import { ToolDescriptorSchema } from "./mcp.ts";
import { ServerSummarySchema } from "./mcp-health.ts";

/**
 * Sent on `loom.v1.tools.list` (`loom tools list`): every tool the workers registered. The
 * orchestrators read KV `loom_tools` and `loom_servers` for the caller, who has no JetStream
 * access to them.
 */
export const ToolListRequestSchema = z.object({}).strict();
/** A registered tool with its server's health as every live worker sees it. */
export const ListedToolSchema = ToolDescriptorSchema.extend({ health: ServerSummarySchema.shape.state });
export type ListedTool = z.infer<typeof ListedToolSchema>;
export const ToolListReplySchema = z.object({ tools: z.array(ListedToolSchema) });
export type ToolListReply = z.infer<typeof ToolListReplySchema>;

/** Sent on `loom.v1.servers.list` (`loom servers list`): every MCP server the workers run. */
export const ServerListRequestSchema = z.object({}).strict();
export const ServerListReplySchema = z.object({ servers: z.array(ServerSummarySchema) });
export type ServerListReply = z.infer<typeof ServerListReplySchema>;
