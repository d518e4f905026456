import { z } from "zod";
import { GovernanceSchema } from "./mcp.ts";

/** How usable a server (or replica) is: `degraded` means some replicas are down, others serve. */
export const HealthState = { UP: "up", DEGRADED: "degraded", DOWN: "down" } as const;
export type HealthState = (typeof HealthState)[keyof typeof HealthState];

export const BreakerState = { CLOSED: "closed", OPEN: "open", HALF_OPEN: "half-open" } as const;
export type BreakerState = (typeof BreakerState)[keyof typeof BreakerState];

/** One process (stdio) or session (http) of one version of a server. */
export const ReplicaHealthSchema = z.object({
  /** `<version>/<index>`, stable across restarts. */
  id: z.string(),
  state: z.enum(HealthState),
  breaker: z.enum(BreakerState),
  /** When an open breaker lets a trial call through again. */
  retryAt: z.iso.datetime().optional(),
  inFlight: z.number().int().nonnegative(),
  /** Times the replica was started again after it died or was killed. */
  restarts: z.number().int().nonnegative(),
  lastError: z.string().optional(),
  lastOkAt: z.iso.datetime().optional(),
  /** Process id of a stdio replica while it runs. */
  pid: z.number().int().optional(),
  /** What the server says it is (MCP `serverInfo`), once connected. */
  serverInfo: z.object({ name: z.string(), version: z.string() }).optional(),
});
export type ReplicaHealth = z.infer<typeof ReplicaHealthSchema>;

export const VersionHealthSchema = z.object({
  name: z.string(),
  weight: z.number(),
  replicas: z.array(ReplicaHealthSchema),
});
export type VersionHealth = z.infer<typeof VersionHealthSchema>;

/**
 * One worker's view of one MCP server, in KV `loom_servers` under `<server>.<workerId>`, written
 * when it changes and refreshed periodically (so a record whose `updatedAt` is old comes from a
 * worker that is gone).
 */
export const ServerHealthSchema = z.object({
  server: z.string(),
  worker: z.string(),
  state: z.enum(HealthState),
  /** `stdio <command> <args>` or `http <url>`; never environment or headers (they hold secrets). */
  transport: z.string(),
  governance: GovernanceSchema,
  inFlight: z.number().int().nonnegative(),
  /** Calls waiting for a slot under the concurrency limit. */
  queued: z.number().int().nonnegative(),
  versions: z.array(VersionHealthSchema),
  updatedAt: z.iso.datetime(),
});
export type ServerHealth = z.infer<typeof ServerHealthSchema>;

/** KV key of a worker's health record for a server (both KV-safe: slugs and a sanitized id). */
export function serverHealthKey(server: string, worker: string): string {
  return `${server}.${worker}`;
}

/** Workers refresh their records every 15 s; one not refreshed for this long is from a gone worker. */
export const HEALTH_STALE_AFTER_MS = 60_000;

/** Whether a health record comes from a worker still running (one heard from recently). */
export function isLiveHealth(record: Pick<ServerHealth, "updatedAt">, now = Date.now()): boolean {
  return now - Date.parse(record.updatedAt) <= HEALTH_STALE_AFTER_MS;
}

/** A server as every live worker sees it together (`loom servers list`, the console's tools page). */
export const ServerSummarySchema = z.object({
  server: z.string(),
  /** Up where every worker says up, down where every one says down, else degraded; unknown without a live worker. */
  state: z.union([z.enum(HealthState), z.literal("unknown")]),
  transport: z.string(),
  governance: GovernanceSchema,
  replicas: z.object({ up: z.number().int(), total: z.number().int() }),
  versions: z.array(z.object({ name: z.string(), weight: z.number() })),
  restarts: z.number().int(),
  lastError: z.string().optional(),
  /** The live workers' records as they wrote them. */
  workers: z.array(ServerHealthSchema),
});
export type ServerSummary = z.infer<typeof ServerSummarySchema>;
