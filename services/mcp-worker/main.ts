import { AgentTaskContract } from "../../schemas/contracts.ts";
import { agentTasksSubject, Buckets, MCP_WORKER_AGENT } from "../../schemas/subjects.ts";
import {
  connectNats,
  createLogger,
  JsonSchemaValidator,
  openBucket,
  runUntilSignalled,
  serve,
  setupTelemetry,
} from "../kit/index.ts";
import { readWorkerConfig } from "./config.ts";
import { McpConnection } from "./mcp-connection.ts";
import { loadServerList } from "./server-config.ts";
import { handleToolTask } from "./task-handler.ts";
import { recordTools } from "./tool-registry.ts";

const SERVICE = "mcp-worker";
const config = readWorkerConfig();
const log = createLogger({ service: SERVICE, level: config.LOG_LEVEL });

await runUntilSignalled(log, async () => {
  const telemetry = setupTelemetry({ service: SERVICE, exporter: config.OTEL_TRACES_EXPORTER });
  const serverList = await loadServerList(config.LOOM_MCP_SERVERS);
  for (const refused of serverList.refused) {
    log.error(
      { mcp_server: refused.name, reason: refused.reason },
      `MCP server "${refused.name}" refused: ${refused.reason}`,
    );
  }
  const nc = await connectNats({ servers: config.NATS_URL, name: SERVICE, log });
  const toolsKv = await openBucket(nc, Buckets.TOOLS);

  const connections = new Map(
    serverList.servers.map((server) => [server.name, new McpConnection(server, log)]),
  );
  await Promise.all(
    [...connections.values()].map(async (connection) => {
      try {
        await recordTools(toolsKv, connection.config, await connection.listTools());
      } catch (error) {
        log.error(
          { err: error, mcp_server: connection.config.name },
          "MCP server not reachable at start; calls will retry",
        );
      }
    }),
  );

  const deps = { connections, validator: new JsonSchemaValidator(), log };
  const subject = agentTasksSubject(MCP_WORKER_AGENT);
  const service = serve(nc, {
    subject,
    queue: MCP_WORKER_AGENT,
    contract: AgentTaskContract,
    log,
    handle: (message) => handleToolTask(deps, message),
  });
  log.info({ subject, servers: [...connections.keys()] }, "serving A2A tool tasks");

  return {
    async close() {
      await service.stop();
      await Promise.all([...connections.values()].map((connection) => connection.close()));
      await nc.drain();
      await telemetry.shutdown();
    },
  };
});
