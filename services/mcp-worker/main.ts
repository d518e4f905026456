import { hostname } from "node:os";
import type { Tool } from "@modelcontextprotocol/sdk/types.js";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { AgentTaskContract } from "../../schemas/contracts.ts";
import { agentTasksSubject, Buckets, MCP_WORKER_AGENT } from "../../schemas/subjects.ts";
import { AuditLog } from "../kit/audit-chain.ts";
import {
  connectNats,
  createLogger,
  ensureStream,
  JsonSchemaValidator,
  openBucket,
  runUntilSignalled,
  StreamDefinitions,
  serve,
  startObservability,
} from "../kit/index.ts";
import { handleAgentTask } from "./agent-task.ts";
import { CallRecords } from "./call-records.ts";
import { recordCatalog } from "./catalog-registry.ts";
import { readSecret, readWorkerConfig } from "./config.ts";
import { createConnections } from "./connections.ts";
import { GrantCheck } from "./grant-check.ts";
import { InFlightTasks } from "./in-flight.ts";
import { CallObserver } from "./observed-call.ts";
import { loadServerList } from "./server-config.ts";
import { HealthReporter } from "./server-health.ts";
import { withTelemetryEnv } from "./server-telemetry.ts";
import { StepResults } from "./step-results.ts";
import { TaskNotifications } from "./task-notifications.ts";
import { recordOnListChanged, recordTools, registerUntilReachable } from "./tool-registry.ts";

const SERVICE = "mcp-worker";
const config = readWorkerConfig();
const log = createLogger({ service: SERVICE, level: config.LOG_LEVEL, format: config.LOG_FORMAT });

await runUntilSignalled(log, async () => {
  const observability = await startObservability({ service: SERVICE, config, log });
  const serverList = await loadServerList(config.LOOM_MCP_SERVERS);
  const { connections, refused: unauthenticated } = createConnections(serverList.servers, {
    log,
    logLevel: config.LOOM_MCP_LOG_LEVEL,
    secret: (name) => readSecret(name),
    prepare: (replica) => withTelemetryEnv(replica, config),
  });
  for (const refused of [...serverList.refused, ...unauthenticated]) {
    log.error(
      { mcp_server: refused.name, reason: refused.reason },
      `MCP server "${refused.name}" refused: ${refused.reason}`,
    );
  }
  const nc = await connectNats({ servers: config.NATS_URL, name: SERVICE, log });
  const toolsKv = await openBucket(nc, Buckets.TOOLS);
  const catalogKv = await openBucket(nc, Buckets.CATALOG);
  const serversKv = await openBucket(nc, Buckets.SERVERS);
  await observability.connected({ nc, streams: [], buckets: [Buckets.TOOLS, Buckets.SERVERS] });

  for (const pool of connections.values()) pool.start();
  const health = new HealthReporter([...connections.values()], {
    kv: serversKv,
    worker: `${SERVICE}-${hostname().replace(/[^A-Za-z0-9_-]/g, "_")}-${process.pid}`,
    log,
  });
  health.start();
  await Promise.all(
    [...connections.values()].map((connection) => {
      const record = async (tools: Tool[]) => {
        await recordTools(toolsKv, connection.config, tools);
        await recordCatalog(catalogKv, connection);
      };
      recordOnListChanged(connection, record, log);
      return registerUntilReachable(connection, record, log);
    }),
  );

  const steps = new StepResults(await openBucket(nc, Buckets.STEPS), `${SERVICE}-${process.pid}`, log);
  const grants = new GrantCheck({
    keys: await openBucket(nc, Buckets.GRANT_KEYS),
    audit: new AuditLog(nc, SERVICE),
    log,
  });
  await ensureStream(await jetstreamManager(nc), StreamDefinitions.toolCalls);
  const calls = new CallObserver(new CallRecords(jetstream(nc), log));
  const notifications = new TaskNotifications(nc, log);
  const deps = {
    connections,
    steps,
    validator: new JsonSchemaValidator(),
    log,
    grants,
    notifications,
    calls,
  };
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
      await health.close();
      await Promise.all([...connections.values()].map((connection) => connection.close()));
      await observability.close();
      await nc.drain();
    },
  };
});
