import { z } from "zod";
import { DurationSchema } from "./duration.ts";

/**
 * `cache:` of an MCP server in `infra/mcp-servers.yaml`: which reads the worker may answer from
 * memory, and for how long. Only reads belong here: a tool listed is declared read-only by whoever
 * configures the server. A cached answer is still policy-checked, audited and masked per caller.
 */
export const McpCacheConfigSchema = z
  .object({
    /** How long an answer is served from memory. */
    ttl: DurationSchema,
    /** Tools whose answers may be cached (same arguments, same answer, no side effect). */
    tools: z.array(z.string().min(1)).default([]),
    /** Cache the server's resource reads too. */
    resources: z.boolean().default(false),
    /** At most this many answers of this server are kept; the least recently used go first. */
    max_entries: z.number().int().positive().default(1_000),
    /** At most this many bytes (of JSON) of this server's answers are kept. */
    max_bytes: z
      .number()
      .int()
      .positive()
      .default(16 * 1024 * 1024),
  })
  .strict()
  .refine((cache) => cache.tools.length > 0 || cache.resources, {
    message: "name the tools to cache, or set resources: true",
  });
export type McpCacheConfig = z.infer<typeof McpCacheConfigSchema>;
