import { z } from "zod";

/**
 * One session of the MCP gateway, in KV `loom_mcp_sessions` under its id. The bucket's TTL ends
 * idle sessions; every gateway replica reads the same record, so any of them serves any session.
 */
export const McpSessionSchema = z.object({
  id: z.string().min(1),
  /** The principal that opened it: a request with another caller's token is refused. */
  principal: z.string().min(1),
  protocolVersion: z.string().min(1),
  clientInfo: z.looseObject({ name: z.string(), version: z.string() }).optional(),
  clientCapabilities: z.record(z.string(), z.unknown()),
  createdAt: z.iso.datetime(),
  lastSeenAt: z.iso.datetime(),
});
export type McpSession = z.infer<typeof McpSessionSchema>;
