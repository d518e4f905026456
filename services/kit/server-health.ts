import { Kvm } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/transport-node";
import { type ToolDescriptor, ToolDescriptorSchema } from "../../schemas/mcp.ts";
import {
  HealthState,
  isLiveHealth,
  type ServerHealth,
  ServerHealthSchema,
  type ServerSummary,
} from "../../schemas/mcp-health.ts";
import { Buckets } from "../../schemas/subjects.ts";
import { parsePayload } from "./bus.ts";

/**
 * Reads every health record in KV `loom_servers`. A reader opens the bucket and never creates it:
 * only the workers that write it may (infra/nats/nats-server.conf).
 */
export async function readServerHealth(nc: NatsConnection): Promise<ServerHealth[]> {
  const kv = await new Kvm(nc).open(Buckets.SERVERS);
  const records: ServerHealth[] = [];
  for await (const key of await kv.keys()) {
    const entry = await kv.get(key);
    if (entry !== null && entry.operation === "PUT")
      records.push(parsePayload(ServerHealthSchema, entry.value, `server health ${key}`));
  }
  return records;
}

/** Folds the workers' records into one line per server, ignoring records of gone workers. */
export function summarizeServers(records: readonly ServerHealth[], now = Date.now()): ServerSummary[] {
  const byServer = new Map<string, ServerHealth[]>();
  for (const record of records) byServer.set(record.server, [...(byServer.get(record.server) ?? []), record]);
  return [...byServer.entries()]
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([server, all]) => {
      const live = all.filter((record) => isLiveHealth(record, now));
      const newest = all.reduce((best, record) => (record.updatedAt > best.updatedAt ? record : best));
      const replicas = live.flatMap((record) => record.versions.flatMap((version) => version.replicas));
      const errors = replicas.filter((replica) => replica.lastError !== undefined);
      const lastError = errors.at(-1)?.lastError;
      return {
        server,
        state: combinedState(live.map((record) => record.state)),
        transport: newest.transport,
        governance: newest.governance,
        replicas: {
          up: replicas.filter((replica) => replica.state !== HealthState.DOWN).length,
          total: replicas.length,
        },
        versions: newest.versions.map((version) => ({ name: version.name, weight: version.weight })),
        restarts: replicas.reduce((sum, replica) => sum + replica.restarts, 0),
        ...(lastError === undefined ? {} : { lastError }),
        workers: live,
      };
    });
}

function combinedState(states: readonly HealthState[]): ServerSummary["state"] {
  if (states.length === 0) return "unknown";
  if (states.every((state) => state === HealthState.UP)) return HealthState.UP;
  if (states.every((state) => state === HealthState.DOWN)) return HealthState.DOWN;
  return HealthState.DEGRADED;
}

/** Every tool the MCP workers registered (KV `loom_tools`), by server and name. */
export async function readToolDescriptors(nc: NatsConnection): Promise<ToolDescriptor[]> {
  const kv = await new Kvm(nc).open(Buckets.TOOLS);
  const tools: ToolDescriptor[] = [];
  for await (const key of await kv.keys()) {
    const entry = await kv.get(key);
    if (entry !== null && entry.operation === "PUT")
      tools.push(parsePayload(ToolDescriptorSchema, entry.value, `tool ${key}`));
  }
  return tools.sort((a, b) => `${a.server}.${a.name}`.localeCompare(`${b.server}.${b.name}`));
}
