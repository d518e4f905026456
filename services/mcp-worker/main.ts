import { hostname } from "node:os";
import type { Tool } from "@modelcontextprotocol/sdk/types.js";
import { AuditKind, type ExecutedCall } from "../../schemas/audit.ts";
import { AgentTaskContract } from "../../schemas/contracts.ts";
import { ResourceUpdatedSchema } from "../../schemas/mcp.ts";
import {
  agentTasksSubject,
  Buckets,
  MCP_WORKER_AGENT,
  MCP_WORKER_SERVICE,
  resourceUpdatedSubject,
} from "../../schemas/subjects.ts";
import { AuditLog } from "../kit/audit-chain.ts";
import { GRANT_USE_MEMORY_MS, GrantCheck } from "../kit/grant-check.ts";
import {
  connectNats,
  createLogger,
  encodePayload,
  JsonSchemaValidator,
  openBucket,
  retryBrokerFailures,
  runUntilSignalled,
  serve,
  startObservability,
  streamReplicas,
} from "../kit/index.ts";
import { handleAgentTask } from "./agent-task.ts";
import { recordCatalog, recordCatalogOnListChanged } from "./catalog-registry.ts";
import { relayElicitationToClient, relaySamplingToClient } from "./client-relay.ts";
import { readSecret, readWorkerConfig } from "./config.ts";
import { createConnections } from "./connections.ts";
import { relayElicitation } from "./elicitation-relay.ts";
import { InFlightTasks } from "./in-flight.ts";
import { CallObserver } from "./observed-call.ts";
import { ResourceSubscribers, resubscribeOnReconnect } from "./resource-subscriptions.ts";
import { removeRetiredServers } from "./retired-servers.ts";
import { relaySampling } from "./sampling-relay.ts";
import { loadServerList } from "./server-config.ts";
import { HealthReporter } from "./server-health.ts";
import { maskedServerRequests } from "./server-requests.ts";
import { withCompileCache, withTelemetryEnv } from "./server-telemetry.ts";
import { StepResults } from "./step-results.ts";
import { TaskNotifications } from "./task-notifications.ts";
import { recordOnListChanged, recordTools, registerUntilReachable } from "./tool-registry.ts";

const SERVICE = MCP_WORKER_SERVICE;
const config = readWorkerConfig();
const log = createLogger({ service: SERVICE, level: config.LOG_LEVEL, format: config.LOG_FORMAT });

await runUntilSignalled(log, async () => {
  const observability = await startObservability({ service: SERVICE, config, log });
  const serverList = await loadServerList(config.LOOM_MCP_SERVERS);
  const nc = await connectNats({
    servers: config.NATS_URL,
    name: SERVICE,
    log,
    passwordFile: config.LOOM_NATS_PASSWORD_FILE,
  });
  const replicas = streamReplicas(nc, config.LOOM_STREAM_REPLICAS);
  const audit = new AuditLog(nc, SERVICE, replicas);
  // A gateway call's server requests are its client's to answer (or refuse); a workflow step's
  // go to the llm agent (sampling) and the run's user (elicitation).
  const clientRelay = {
    nc,
    log,
    audit,
    samplingTimeoutMs: config.LOOM_SAMPLING_TIMEOUT_MS,
    elicitationTimeoutMs: config.LOOM_ELICITATION_TIMEOUT_MS,
  };
  const serverRequests = maskedServerRequests({
    onSampling: (params, origin) =>
      origin.clientRelay !== undefined
        ? relaySamplingToClient(clientRelay, params, origin)
        : relaySampling(
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
      origin.clientRelay !== undefined
        ? relayElicitationToClient(clientRelay, params, origin)
        : relayElicitation(
            { nc, log, elicitationTimeoutMs: config.LOOM_ELICITATION_TIMEOUT_MS },
            params,
            origin,
          ),
    elicitationTimeoutMs: config.LOOM_ELICITATION_TIMEOUT_MS,
  });
  const { connections, refused: unauthenticated } = createConnections(serverList.servers, {
    log,
    logLevel: config.LOOM_MCP_LOG_LEVEL,
    secret: (name) => readSecret(name),
    prepare: (replica) => withCompileCache(withTelemetryEnv(replica, config), config.NODE_COMPILE_CACHE),
    serverRequests,
  });
  for (const refused of [...serverList.refused, ...unauthenticated]) {
    log.error(
      { mcp_server: refused.name, reason: refused.reason },
      `MCP server "${refused.name}" refused: ${refused.reason}`,
    );
  }
  // Independent set-up steps at once, not one round trip after another: a replica that replaces a
  // crashed one is worth only as much as it is quick to start.
  const [toolsKv, catalogKv, serversKv, stepsKv, grantKeysKv, grantUsesKv] = await Promise.all([
    openBucket(nc, Buckets.TOOLS, { replicas }),
    openBucket(nc, Buckets.CATALOG, { replicas }),
    openBucket(nc, Buckets.SERVERS, { replicas }),
    openBucket(nc, Buckets.STEPS, { replicas }),
    openBucket(nc, Buckets.GRANT_KEYS, { replicas }),
    openBucket(nc, Buckets.GRANT_USES, { ttlMs: GRANT_USE_MEMORY_MS, replicas }),
  ]);
  await observability.connected({
    nc,
    streams: [],
    buckets: [Buckets.TOOLS, Buckets.CATALOG, Buckets.SERVERS],
  });

  const health = new HealthReporter([...connections.values()], {
    kv: serversKv,
    worker: `${SERVICE}-${hostname().replace(/[^A-Za-z0-9_-]/g, "_")}-${process.pid}`,
    log,
  });
  health.start();
  await retryBrokerFailures(() =>
    removeRetiredServers({
      tools: toolsKv,
      catalog: catalogKv,
      servers: serversKv,
      configured: new Set(connections.keys()),
      log,
    }),
  );

  const worker = `${SERVICE}-${process.pid}`;
  const steps = new StepResults(stepsKv, worker, log, async (key, previous) => {
    await audit.append({
      kind: AuditKind.TOOL_REINVOCATION,
      principal: worker,
      resource: key,
      reason: `the claim of ${previous} lapsed without an outcome; the tool may see this step twice`,
    });
  });
  const grants = new GrantCheck({ keys: grantKeysKv, uses: grantUsesKv, audit, log });
  const calls = new CallObserver();
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
  // Whoever subscribed, a server's resource updates go to every gateway replica, which tells the
  // sessions subscribed to that URI.
  const subscribers = new ResourceSubscribers();
  for (const [server, pool] of connections) {
    resubscribeOnReconnect(pool, server, subscribers, log);
    pool.onResourceUpdated((uri) =>
      nc.publish(
        resourceUpdatedSubject(server),
        encodePayload(ResourceUpdatedSchema, { server, uri }, "resource update"),
      ),
    );
  }
  const subject = agentTasksSubject(MCP_WORKER_AGENT);
  const service = serve(nc, {
    subject,
    queue: MCP_WORKER_AGENT,
    contract: AgentTaskContract,
    log,
    // Tasks come from acp-policy only (infra/nats), which names the asker to answer.
    forwarded: true,
    handle: (message, context) => {
      const executed: ExecutedCall = {};
      return grants.audited(message, () => handleAgentTask(deps, inFlight, subscribers, message, executed), {
        executed,
        afterReply: context.afterReply,
      });
    },
  });
  log.info({ subject, servers: [...connections.keys()] }, "serving A2A tool tasks");
  // The MCP servers start, and list their tools, once the worker is ready: seconds for a stdio
  // server on a busy machine, and their processes would compete with the worker's own start. A call
  // that comes first starts its server (and waits for its connection), so a worker that replaces a
  // crashed one serves at once. Each listing retries on its own, never throws.
  const startServers = () => {
    for (const pool of connections.values()) pool.start();
    void Promise.all(
      [...connections.values()].map((connection) => {
        const record = async (tools: Tool[]) => {
          await recordTools(toolsKv, connection.config, tools);
          await recordCatalog(catalogKv, connection);
        };
        recordOnListChanged(connection, record, log);
        recordCatalogOnListChanged(catalogKv, connection, log);
        return registerUntilReachable(connection, record, log);
      }),
    );
  };
  // After the "started" line, which is logged as soon as this function returns: before any immediate.
  setImmediate(startServers);

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
