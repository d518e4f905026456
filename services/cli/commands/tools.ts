import { readServerHealth, readToolDescriptors, summarizeServers } from "../../kit/server-health.ts";
import { connectCli } from "../connection.ts";
import { ExitCode } from "../exit-codes.ts";
import { table } from "../render.ts";

/** `loom tools list`: every tool the MCP workers registered, with its governance metadata. */
export async function toolsListCommand(options: { nats: string; json: boolean }): Promise<ExitCode> {
  const nc = await connectCli(options.nats);
  try {
    const tools = await readToolDescriptors(nc);
    const health = new Map(
      summarizeServers(await readServerHealth(nc)).map((server) => [server.server, server.state]),
    );
    const healthOf = (server: string) => health.get(server) ?? "unknown";
    if (options.json) {
      console.log(JSON.stringify(tools.map((tool) => ({ ...tool, health: healthOf(tool.server) }))));
      return ExitCode.OK;
    }
    if (tools.length === 0) {
      console.log("no tools registered yet: is an mcp-worker running?");
      return ExitCode.OK;
    }
    console.log(
      table(
        ["TOOL", "CLASSIFICATION", "ACCESS", "OWNER", "HEALTH", "DESCRIPTION"],
        tools.map((tool) => [
          `${tool.server}.${tool.name}`,
          tool.governance.data_classification,
          tool.governance.access_level,
          tool.governance.owner,
          healthOf(tool.server),
          tool.description ?? "",
        ]),
      ),
    );
    return ExitCode.OK;
  } finally {
    await nc.close();
  }
}
