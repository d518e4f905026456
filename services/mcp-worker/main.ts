import { AgentTaskContract } from "../../schemas/contracts.ts";
import { agentTasksSubject, Buckets, MCP_WORKER_AGENT } from "../../schemas/subjects.ts";
import { AuditLog } from "../kit/audit-chain.ts";
import { GrantCheck } from "../kit/grant-check.ts";
import {
  connectNats,
  createLogger,
  JsonSchemaValidator,
  openBucket,
  runUntilSignalled,
  serve,
  startObservability,
} from "../kit/index.ts";
import { handleAgentTask } from "./agent-task.ts";
import { readWorkerConfig } from "./config.ts";
import { InFlightTasks } from "./in-flight.ts";
import { McpConnection } from "./mcp-connection.ts";
import { loadServerList } from "./server-config.ts";
import { withTelemetryEnv } from "./server-telemetry.ts";
import { StepResults } from "./step-results.ts";
import { recordTools, registerUntilReachable } from "./tool-registry.ts";

const SERVICE = "mcp-worker";
const config = readWorkerConfig();
const log = createLogger({ service: SERVICE, level: config.LOG_LEVEL, format: config.LOG_FORMAT });

await runUntilSignalled(log, async () => {
  const observability = await startObservability({ service: SERVICE, config, log });
  const serverList = await loadServerList(config.LOOM_MCP_SERVERS);
  for (const refused of serverList.refused) {
    log.error(
      { mcp_server: refused.name, reason: refused.reason },
      `MCP server "${refused.name}" refused: ${refused.reason}`,
    );
  }
  const nc = await connectNats({ servers: config.NATS_URL, name: SERVICE, log });
  const toolsKv = await openBucket(nc, Buckets.TOOLS);
  await observability.connected({ nc, streams: [], buckets: [Buckets.TOOLS] });

  const connections = new Map(
    serverList.servers.map((server) => [
      server.name,
      new McpConnection(withTelemetryEnv(server, config), log),
    ]),
  );
  await Promise.all(
    [...connections.values()].map((connection) =>
      registerUntilReachable(connection, (tools) => recordTools(toolsKv, connection.config, tools), log),
    ),
  );

  const steps = new StepResults(await openBucket(nc, Buckets.STEPS), `${SERVICE}-${process.pid}`, log);
  const grants = new GrantCheck({
    keys: await openBucket(nc, Buckets.GRANT_KEYS),
    audit: new AuditLog(nc, SERVICE),
    log,
  });
  const deps = { connections, steps, validator: new JsonSchemaValidator(), log, grants };
  const inFlight = new InFlightTasks();
  inFlight.listen(nc, log);
  const subject = agentTasksSubject(MCP_WORKER_AGENT);
  const service = serve(nc, {
    subject,
    queue: MCP_WORKER_AGENT,
    contract: AgentTaskContract,
    log,
    handle: (message) => grants.audited(message, () => handleAgentTask(deps, inFlight, message)),
  });
  log.info({ subject, servers: [...connections.keys()] }, "serving A2A tool tasks");

  return {
    async close() {
      await service.stop();
      await Promise.all([...connections.values()].map((connection) => connection.close()));
      await observability.close();
      await nc.drain();
    },
  };
});
