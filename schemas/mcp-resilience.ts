import { z } from "zod";
import { DurationSchema } from "./duration.ts";
import { SlugSchema } from "./workflow.ts";

/**
 * Retries of one MCP call after a failure worth another try (the server went away or did not
 * answer in time). A tool's own error result and refused arguments are never retried, and a tool
 * call is repeated only when repeating it is safe: it carries a Loom idempotency key, or the tool
 * declares itself read-only or idempotent.
 */
export const McpRetrySchema = z
  .object({
    /** Attempts after the first one. */
    max: z.number().int().min(0).max(10).default(2),
    /** First delay; each next one grows exponentially, with jitter. */
    backoff: DurationSchema.default(200),
    maxBackoff: DurationSchema.default(5_000),
  })
  .strict();
export type McpRetry = z.infer<typeof McpRetrySchema>;

/** Per replica: after `failures` consecutive failures no call goes to it until `halfOpenAfter`. */
export const McpCircuitBreakerSchema = z
  .object({
    failures: z.number().int().min(1).default(5),
    /** How long an open breaker stays open before one trial call may go through. */
    halfOpenAfter: DurationSchema.default(30_000),
  })
  .strict();
export type McpCircuitBreaker = z.infer<typeof McpCircuitBreakerSchema>;

/**
 * Bulkhead per server: at most `max` calls in flight, `queue` more wait, the rest are refused. The
 * queue is deep by default: a waiting call is still bounded by its own timeout, and a fan-out of a
 * few dozen runs must not fail for want of a place in line.
 */
export const McpConcurrencySchema = z
  .object({
    max: z.number().int().min(1).default(32),
    queue: z.number().int().min(0).default(4096),
  })
  .strict();
export type McpConcurrency = z.infer<typeof McpConcurrencySchema>;

/** How a replica that died (crashed, or was killed after a timeout) is started again. */
export const McpRestartSchema = z
  .object({
    backoff: DurationSchema.default(500),
    maxBackoff: DurationSchema.default(30_000),
  })
  .strict();
export type McpRestart = z.infer<typeof McpRestartSchema>;

/** A number of processes (stdio) or sessions, or for an http server the URLs of its replicas. */
export const McpReplicasSchema = z.union([z.number().int().min(1).max(32), z.array(z.url()).min(1).max(32)]);
export type McpReplicas = z.infer<typeof McpReplicasSchema>;

/**
 * One version of a server in an A/B rollout. Without its own transport it runs the server's; a
 * share of `weight / sum of weights` of the calls goes to it.
 */
export function mcpVersionSchema<Transport extends z.ZodType>(transport: Transport) {
  return z
    .object({
      name: SlugSchema,
      weight: z.number().min(0),
      transport: transport.optional(),
      replicas: McpReplicasSchema.optional(),
    })
    .strict();
}

/** A `versions:` block: distinct names and at least one version that takes calls. */
export function mcpVersionsSchema<Transport extends z.ZodType>(transport: Transport) {
  return z
    .array(mcpVersionSchema(transport))
    .min(1)
    .refine((versions) => new Set(versions.map((version) => version.name)).size === versions.length, {
      message: "version names must be distinct",
    })
    .refine((versions) => versions.some((version) => version.weight > 0), {
      message: "at least one version needs a weight above 0",
    });
}

/** Resilience fields of an MCP server entry, with their defaults. */
export const McpResilienceFields = {
  retries: McpRetrySchema.default(McpRetrySchema.parse({})),
  circuitBreaker: McpCircuitBreakerSchema.default(McpCircuitBreakerSchema.parse({})),
  concurrency: McpConcurrencySchema.default(McpConcurrencySchema.parse({})),
  restart: McpRestartSchema.default(McpRestartSchema.parse({})),
  replicas: McpReplicasSchema.default(1),
};

/** The version name calls carry when a server has no `versions:` block. */
export const DEFAULT_SERVER_VERSION = "default";
