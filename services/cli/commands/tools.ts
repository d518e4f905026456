import { ToolListContract } from "../../../schemas/contracts.ts";
import { Subjects } from "../../../schemas/subjects.ts";
import { connectCli, requestAs } from "../connection.ts";
import { ExitCode } from "../exit-codes.ts";
import { table } from "../render.ts";

/**
 * `loom tools list`: every tool the MCP workers registered, with its governance metadata and its
 * server's health, as the orchestrators read them from KV `loom_tools` and `loom_servers`.
 */
export async function toolsListCommand(options: { nats: string; json: boolean }): Promise<ExitCode> {
  const nc = await connectCli(options.nats);
  try {
    const { tools } = await requestAs(nc, Subjects.TOOLS_LIST, ToolListContract, {}, undefined);
    if (options.json) {
      console.log(JSON.stringify(tools));
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
          tool.health,
          tool.description ?? "",
        ]),
      ),
    );
    return ExitCode.OK;
  } finally {
    await nc.close();
  }
}
