import { z } from "zod";

/** MCP log levels (RFC 5424 severities), least severe first. */
export const MCP_LOG_LEVELS = [
  "debug",
  "info",
  "notice",
  "warning",
  "error",
  "critical",
  "alert",
  "emergency",
] as const;
export type McpLogLevel = (typeof MCP_LOG_LEVELS)[number];

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
  /**
   * Resources tools returned links to in this session, each with the server it came from: a client
   * may read a link at once, and a server need not list what it links to (MCP says so).
   */
  links: z.record(z.string(), z.string()).optional(),
  /**
   * Resources the client subscribed to (`resources/subscribe`), each with its server: their
   * `notifications/resources/updated` reach the session's `GET /mcp` stream.
   */
  subscriptions: z.record(z.string(), z.string()).optional(),
  /** Set by the client's `logging/setLevel`: less severe log notifications are not relayed. */
  logLevel: z.enum(MCP_LOG_LEVELS).optional(),
  createdAt: z.iso.datetime(),
  lastSeenAt: z.iso.datetime(),
});
export type McpSession = z.infer<typeof McpSessionSchema>;
