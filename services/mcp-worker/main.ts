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
import { relayElicitation } from "./elicitation-relay.ts";
import { InFlightTasks } from "./in-flight.ts";
import { McpConnection } from "./mcp-connection.ts";
import { relaySampling } from "./sampling-relay.ts";
import { loadServerList } from "./server-config.ts";
import type { ServerRequestHandlers } from "./server-requests.ts";
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

  const serverRequests: ServerRequestHandlers = {
    onSampling: (params, origin) =>
      relaySampling(
        {
          nc,
          log,
          policyTimeoutMs: config.LOOM_POLICY_TIMEOUT_MS,
          samplingTimeoutMs: config.LOOM_SAMPLING_TIMEOUT_MS,
        },
        params,
        origin,
      ),
    onElicitation: (params, origin) =>
      relayElicitation({ nc, log, elicitationTimeoutMs: config.LOOM_ELICITATION_TIMEOUT_MS }, params, origin),
    elicitationTimeoutMs: config.LOOM_ELICITATION_TIMEOUT_MS,
  };
  const connections = new Map(
    serverList.servers.map((server) => [
      server.name,
      new McpConnection(withTelemetryEnv(server, config), log, serverRequests),
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
    handle: (message, context) =>
      grants.audited(message, () => handleAgentTask(deps, inFlight, message, context.authorization)),
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
