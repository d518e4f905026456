import type { NatsConnection } from "@nats-io/transport-node";
import { ServerListContract, ToolListContract } from "../../schemas/contracts.ts";
import { Subjects } from "../../schemas/subjects.ts";
import { type Logger, type Service, serve } from "../kit/index.ts";
import { readServerHealth, readToolDescriptors, summarizeServers } from "../kit/server-health.ts";

const QUEUE = "orchestrator-tool-listing";

/**
 * Serves `loom tools list` and `loom servers list`: the orchestrator reads KV `loom_tools` and
 * `loom_servers` for the caller, so the submitter's NATS user needs no consumer on them (a push
 * consumer's deliver subject, which NATS does not check, could send their records anywhere).
 * The registry is the catalog every caller may see, as `loom workflow list` is: no token needed.
 */
export function serveToolListing(options: { nc: NatsConnection; log: Logger }): Service {
  const { nc, log } = options;
  const servers = serve(nc, {
    subject: Subjects.SERVERS_LIST,
    queue: QUEUE,
    contract: ServerListContract,
    log,
    handle: async () => ({ servers: summarizeServers(await readServerHealth(nc)) }),
  });
  const tools = serve(nc, {
    subject: Subjects.TOOLS_LIST,
    queue: QUEUE,
    contract: ToolListContract,
    log,
    handle: async () => {
      const [descriptors, health] = await Promise.all([readToolDescriptors(nc), readServerHealth(nc)]);
      const states = new Map(summarizeServers(health).map((server) => [server.server, server.state]));
      return {
        tools: descriptors.map((tool) => ({ ...tool, health: states.get(tool.server) ?? "unknown" })),
      };
    },
  });
  return {
    async stop() {
      await Promise.all([servers.stop(), tools.stop()]);
    },
  };
}
