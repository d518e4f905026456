import type { KV } from "@nats-io/kv";
import { isLiveHealth, ServerHealthSchema } from "../../schemas/mcp-health.ts";
import { type Logger, parsePayload } from "../kit/index.ts";

/**
 * Removes from KV `loom_tools` and `loom_catalog` the servers that this worker does not run and no
 * live worker reports health for: a server taken out of every worker's config must leave
 * `loom tools list` and the MCP gateway instead of lingering there. Servers other workers still
 * run keep their entries.
 */
export async function removeRetiredServers(options: {
  tools: KV;
  catalog: KV;
  servers: KV;
  configured: ReadonlySet<string>;
  log: Logger;
}): Promise<string[]> {
  const { tools, catalog, servers, configured, log } = options;
  const recorded = new Set<string>();
  for await (const key of await tools.keys()) recorded.add(key.split(".")[0] ?? key);
  for await (const key of await catalog.keys()) recorded.add(key);
  const retired: string[] = [];
  for (const server of [...recorded].sort()) {
    if (configured.has(server) || (await runByLiveWorker(servers, server))) continue;
    for await (const key of await tools.keys(`${server}.>`)) await tools.delete(key);
    if ((await catalog.get(server)) !== null) await catalog.delete(server);
    retired.push(server);
    log.warn(
      { mcp_server: server },
      `MCP server "${server}" is in no running worker's config any more: its tools and catalog entry were removed`,
    );
  }
  return retired;
}

async function runByLiveWorker(servers: KV, server: string): Promise<boolean> {
  for await (const key of await servers.keys(`${server}.>`)) {
    const entry = await servers.get(key);
    if (entry?.operation !== "PUT") continue;
    if (isLiveHealth(parsePayload(ServerHealthSchema, entry.value, `server health ${key}`))) return true;
  }
  return false;
}
