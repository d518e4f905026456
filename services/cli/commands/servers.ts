import { ServerListContract } from "../../../schemas/contracts.ts";
import { Subjects } from "../../../schemas/subjects.ts";
import { connectCli, requestAs } from "../connection.ts";
import { ExitCode } from "../exit-codes.ts";
import { table } from "../render.ts";

/**
 * `loom servers list`: every MCP server the workers run, with governance, transport and health, as
 * the orchestrators read them from KV `loom_servers`.
 */
export async function serversListCommand(options: { nats: string; json: boolean }): Promise<ExitCode> {
  const nc = await connectCli(options.nats);
  try {
    const { servers } = await requestAs(nc, Subjects.SERVERS_LIST, ServerListContract, {}, undefined);
    if (options.json) {
      console.log(JSON.stringify(servers));
      return ExitCode.OK;
    }
    if (servers.length === 0) {
      console.log("no MCP servers reported yet: is an mcp-worker running?");
      return ExitCode.OK;
    }
    console.log(
      table(
        [
          "SERVER",
          "HEALTH",
          "REPLICAS",
          "VERSIONS",
          "RESTARTS",
          "CLASSIFICATION",
          "ACCESS",
          "OWNER",
          "TRANSPORT",
          "LAST ERROR",
        ],
        servers.map((server) => [
          server.server,
          server.state,
          `${server.replicas.up}/${server.replicas.total}`,
          server.versions.map((version) => `${version.name}:${version.weight}`).join(" "),
          String(server.restarts),
          server.governance.data_classification,
          server.governance.access_level,
          server.governance.owner,
          server.transport,
          server.lastError ?? "",
        ]),
      ),
    );
    return ExitCode.OK;
  } finally {
    await nc.close();
  }
}
