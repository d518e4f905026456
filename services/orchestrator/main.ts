import { hostname } from "node:os";
import { jetstream } from "@nats-io/jetstream";
import { toolTaskInboxOf } from "../../schemas/nats-users.ts";
import { Buckets } from "../../schemas/subjects.ts";
import { grantKeySource } from "../kit/grant-check.ts";
import {
  connectNats,
  createLogger,
  ensureStream,
  JsonSchemaValidator,
  MuxedRequests,
  natsServerOptions,
  observeGauge,
  openBucket,
  openJetStreamManager,
  runUntilSignalled,
  StreamDefinitions,
  startObservability,
  streamReplicas,
} from "../kit/index.ts";
import { OutboundCredentials } from "./a2a/outbound-credentials.ts";
import { OutboundAllowList, OutboundTargets } from "./a2a/outbound-url.ts";
import { RemoteAgents } from "./a2a/remote-agents.ts";
import { expressionLimitsOf, readOrchestratorConfig, runLimitsOf } from "./config.ts";
import { ContextMemoryStore } from "./context-memory.ts";
import { DefinitionStore } from "./definition-store.ts";
import { listenHttpEdge } from "./http-listener.ts";
import { ResultStore } from "./result-store.ts";
import { serveRunControl } from "./run-control.ts";
import { RunDriver } from "./run-driver.ts";
import { RunEvents } from "./run-events.ts";
import { serveRunReads } from "./run-reads.ts";
import { startRunRecovery } from "./run-recovery.ts";
import { serveRunRerun } from "./run-rerun.ts";
import { RunStore } from "./run-store.ts";
import { RunTokens } from "./run-tokens.ts";
import { consumeSubmissions, ensureSubmissionConsumer } from "./submissions.ts";
import { TaskProgressFeed } from "./task-progress.ts";
import { serveToolFeedback } from "./tool-feedback.ts";
import { serveToolListing } from "./tool-listing.ts";
import { serveToolStats } from "./tool-stats.ts";
import { WorkflowAgents } from "./workflow-agents.ts";

/** Run tokens are kept no longer than a run's submission is (the LOOM_RUNS stream's max age). */
const RUN_TOKEN_MEMORY_MS = 7 * 24 * 3_600_000;

import { WorkflowCatalog } from "./workflow-catalog.ts";
import { WorkflowRegistry } from "./workflow-registry.ts";

const SERVICE = "orchestrator";
/** This process's name in the records of the runs it drives. */
const REPLICA = `${SERVICE}-${hostname()}-${process.pid}`;

const config = readOrchestratorConfig();
const log = createLogger({ service: SERVICE, level: config.LOG_LEVEL, format: config.LOG_FORMAT });

await runUntilSignalled(log, async () => {
  const observability = await startObservability({
    service: SERVICE,
    config,
    publicUrl: config.LOOM_A2A_PUBLIC_URL,
    log,
  });
  const workflowFiles = await WorkflowCatalog.readDirectory(config.LOOM_WORKFLOWS_DIR);
  for (const error of workflowFiles.refused) {
    log.error(
      { code: error.code, dir: config.LOOM_WORKFLOWS_DIR },
      `workflow file skipped: ${error.message}`,
    );
  }
  const limits = runLimitsOf(config);
  const delegateAllowList = OutboundAllowList.parse(OutboundTargets.DELEGATE, config.LOOM_A2A_DELEGATE_ALLOW);
  const webhookAllowList = OutboundAllowList.parse(OutboundTargets.WEBHOOK, config.LOOM_A2A_WEBHOOK_ALLOW);
  const catalog = new WorkflowCatalog(limits, delegateAllowList);

  const nc = await connectNats({
    servers: config.NATS_URL,
    name: SERVICE,
    log,
    passwordFile: config.LOOM_NATS_PASSWORD_FILE,
  });
  const jsm = await openJetStreamManager(nc);
  // Tool tasks are answered on an inbox of their own: the only one of ours the worker may publish to.
  const toolTasks = new MuxedRequests(
    nc,
    toolTaskInboxOf(natsServerOptions(config.NATS_URL).user ?? SERVICE),
  );
  const replicas = streamReplicas(nc, config.LOOM_STREAM_REPLICAS);
  // Streams and buckets do not depend on one another: made or checked at once, not one by one,
  // since a replica that replaces a crashed one is worth only as much as it is quick to start.
  const [
    workflowsKv,
    toolsKv,
    runsKv,
    resultsKv,
    pushKv,
    catalogKv,
    sessionsKv,
    runTokensKv,
    memoryKv,
    grantKeysKv,
  ] = await Promise.all([
    openBucket(nc, Buckets.WORKFLOWS, { replicas }),
    openBucket(nc, Buckets.TOOLS, { replicas }),
    openBucket(nc, Buckets.RUNS, { replicas, history: 5 }),
    openBucket(nc, Buckets.RESULTS, { replicas }),
    openBucket(nc, Buckets.PUSH, { replicas }),
    openBucket(nc, Buckets.CATALOG, { replicas }),
    openBucket(nc, Buckets.MCP_SESSIONS, { replicas, ttlMs: config.LOOM_MCP_SESSION_TTL_MS }),
    openBucket(nc, Buckets.RUN_TOKENS, { replicas, ttlMs: RUN_TOKEN_MEMORY_MS }),
    openBucket(nc, Buckets.MEMORY, { replicas, ttlMs: config.LOOM_MEMORY_TTL_MS }),
    openBucket(nc, Buckets.GRANT_KEYS, { replicas }),
    ensureStream(jsm, StreamDefinitions.runs, replicas).then(() => ensureSubmissionConsumer(jsm)),
    ensureStream(jsm, StreamDefinitions.events, replicas),
    ensureStream(jsm, StreamDefinitions.toolCalls, replicas),
    // Even with LOOM_TRACE_STREAM off: every service may create LOOM_SPANS, and a stream that
    // exists cannot be created again with another config (say, capturing loom.v1.policy.>).
    ensureStream(jsm, StreamDefinitions.spans, replicas),
  ]);
  const js = jetstream(nc);
  const registry = new WorkflowRegistry(workflowsKv, catalog, log);
  await registry.start(workflowFiles.workflows);
  log.info({ workflows: catalog.ids() }, "workflows registered");
  const workflowService = registry.serve(nc, toolsKv, config.LOOM_POLICY_TIMEOUT_MS);
  const agents = new WorkflowAgents(nc, jetstream(nc), limits, log);
  catalog.onNewWorkflow((id) => agents.expose(id));
  const runs = new RunStore(runsKv, new DefinitionStore(resultsKv));
  const validator = new JsonSchemaValidator();
  // The HTTP side (A2A edge, MCP gateway, console) listens now and loads once the bus side is ready.
  const edge = await listenHttpEdge({
    host: config.LOOM_HTTP_HOST,
    port: config.LOOM_A2A_PORT,
    allowed: observability.httpAllowList,
    log,
    open: async (port) =>
      (await import("./http-surface.ts")).openHttpSurface({
        nc,
        jsm,
        config,
        webhookAllowList,
        buckets: { push: pushKv, tools: toolsKv, catalog: catalogKv, sessions: sessionsKv, runs: runsKv },
        runs,
        workflows: catalog,
        validator,
        toolTasks,
        publicUrl: config.LOOM_A2A_PUBLIC_URL ?? `http://127.0.0.1:${port}`,
        log,
      }),
  });
  await observability.connected({
    nc,
    streams: [StreamDefinitions.runs.name, StreamDefinitions.events.name],
    buckets: [Buckets.RUNS],
  });
  const events = new RunEvents(js);
  const runTokens = new RunTokens(runTokensKv);
  const memory = new ContextMemoryStore(
    memoryKv,
    { maxEntries: config.LOOM_MEMORY_MAX_ENTRIES, maxBytes: config.LOOM_MEMORY_MAX_BYTES },
    log,
  );
  const progress = new TaskProgressFeed(nc, log);
  const driver = new RunDriver({
    runTokens,
    progress,
    toolTasks,
    nc,
    runs,
    events,
    log,
    policyTimeoutMs: config.LOOM_POLICY_TIMEOUT_MS,
    stepTimeoutMs: config.LOOM_STEP_TIMEOUT_MS,
    elicitationTimeoutMs: config.LOOM_ELICITATION_TIMEOUT_MS,
    owner: REPLICA,
    leaseMs: config.LOOM_RUN_LEASE_MS,
    memory,
    remoteAgents: new RemoteAgents({
      credentials: new OutboundCredentials(config.LOOM_A2A_OUTBOUND_CREDENTIALS),
      allowList: delegateAllowList,
      log,
    }),
    expressionLimits: expressionLimitsOf(config),
    results: new ResultStore(resultsKv, config.LOOM_RESULT_INLINE_MAX_BYTES),
  });
  await driver.watch(runsKv);
  const control = serveRunControl({
    nc,
    runs,
    driver,
    log,
    policyTimeoutMs: config.LOOM_POLICY_TIMEOUT_MS,
    grantKeys: grantKeySource(grantKeysKv),
    runTokens,
  });
  const feedback = serveToolFeedback({ nc, js, runs, log, policyTimeoutMs: config.LOOM_POLICY_TIMEOUT_MS });
  const toolStats = serveToolStats({ nc, js, log, policyTimeoutMs: config.LOOM_POLICY_TIMEOUT_MS });
  const toolListing = serveToolListing({ nc, log });
  const reads = serveRunReads({ nc, js, runs, memory, log, policyTimeoutMs: config.LOOM_POLICY_TIMEOUT_MS });
  const reruns = serveRunRerun({ nc, js, runs, log, policyTimeoutMs: config.LOOM_POLICY_TIMEOUT_MS });
  observeGauge("loom_runs_active", "Runs this orchestrator is driving now", () => driver.activeRuns);
  const submissionOptions = {
    nc,
    js,
    catalog,
    runs,
    events,
    driver,
    validator,
    limits,
    log,
    policyTimeoutMs: config.LOOM_POLICY_TIMEOUT_MS,
    maxConcurrent: config.LOOM_MAX_CONCURRENT_SUBMISSIONS,
    owner: REPLICA,
    leaseMs: config.LOOM_RUN_LEASE_MS,
    runTokens,
    memory,
  };
  const submissions = await consumeSubmissions(submissionOptions);
  log.info("taking run submissions");
  const recovery = startRunRecovery({ ...submissionOptions, jsm, windowMs: config.LOOM_RECOVERY_WINDOW_MS });
  // After the "started" line, which is logged as soon as this function returns: before any immediate.
  setImmediate(() => edge.load());

  return {
    async close() {
      await submissions.stop();
      await recovery.stop();
      await control.stop();
      await feedback.stop();
      await toolStats.stop();
      await toolListing.stop();
      await reads.stop();
      await reruns.stop();
      await workflowService.stop();
      await agents.stop();
      await edge.close();
      await driver.stop();
      progress.close();
      toolTasks.close();
      await observability.close();
      await nc.drain();
    },
  };
});
