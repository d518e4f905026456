import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { Buckets } from "../../schemas/subjects.ts";
import {
  connectNats,
  createLogger,
  ensureStream,
  JsonSchemaValidator,
  openBucket,
  runUntilSignalled,
  StreamDefinitions,
  setupTelemetry,
} from "../kit/index.ts";
import { readOrchestratorConfig } from "./config.ts";
import { RunDriver } from "./run-driver.ts";
import { RunEvents } from "./run-events.ts";
import { RunStore } from "./run-store.ts";
import { consumeSubmissions, ensureSubmissionConsumer } from "./submissions.ts";
import { WorkflowCatalog } from "./workflow-catalog.ts";

const SERVICE = "orchestrator";
/** How long shutdown waits for runs to reach their next checkpoint. */
const SHUTDOWN_GRACE_MS = 5_000;

const config = readOrchestratorConfig();
const log = createLogger({ service: SERVICE, level: config.LOG_LEVEL });

await runUntilSignalled(log, async () => {
  const telemetry = setupTelemetry({ service: SERVICE, exporter: config.OTEL_TRACES_EXPORTER });
  const catalog = await WorkflowCatalog.fromDirectory(config.LOOM_WORKFLOWS_DIR);
  log.info({ workflows: catalog.ids() }, "workflows registered");

  const nc = await connectNats({ servers: config.NATS_URL, name: SERVICE, log });
  const jsm = await jetstreamManager(nc);
  await ensureStream(jsm, StreamDefinitions.runs);
  await ensureStream(jsm, StreamDefinitions.events);
  await ensureSubmissionConsumer(jsm);
  const js = jetstream(nc);
  const runs = new RunStore(await openBucket(nc, Buckets.RUNS));
  const events = new RunEvents(js);
  const driver = new RunDriver({
    nc,
    runs,
    events,
    log,
    policyTimeoutMs: config.LOOM_POLICY_TIMEOUT_MS,
    stepTimeoutMs: config.LOOM_STEP_TIMEOUT_MS,
  });
  const submissions = await consumeSubmissions({
    nc,
    js,
    catalog,
    runs,
    events,
    driver,
    validator: new JsonSchemaValidator(),
    log,
    policyTimeoutMs: config.LOOM_POLICY_TIMEOUT_MS,
    maxConcurrent: config.LOOM_MAX_CONCURRENT_SUBMISSIONS,
  });
  log.info("taking run submissions");

  return {
    async close() {
      await submissions.stop();
      await driver.stop(SHUTDOWN_GRACE_MS);
      await nc.drain();
      await telemetry.shutdown();
    },
  };
});
