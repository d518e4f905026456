import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { PolicyDecideContract } from "../../schemas/contracts.ts";
import { QueueGroups, Subjects } from "../../schemas/subjects.ts";
import {
  connectNats,
  createLogger,
  ensureStream,
  runUntilSignalled,
  StreamDefinitions,
  serve,
  setupTelemetry,
} from "../kit/index.ts";
import { AuditLog } from "./audit-log.ts";
import { readPolicyServiceConfig } from "./config.ts";
import { decide } from "./decide.ts";
import { loadPolicyDir } from "./policy-loader.ts";

const SERVICE = "acp-policy";
const config = readPolicyServiceConfig();
const log = createLogger({ service: SERVICE, level: config.LOG_LEVEL });

await runUntilSignalled(log, async () => {
  const telemetry = setupTelemetry({ service: SERVICE, exporter: config.OTEL_TRACES_EXPORTER });
  const policy = await loadPolicyDir(config.LOOM_POLICY_DIR);
  log.info({ policy_version: policy.version, rules: policy.rules.length }, "policy loaded");

  const nc = await connectNats({ servers: config.NATS_URL, name: SERVICE, log });
  await ensureStream(await jetstreamManager(nc), StreamDefinitions.audit);
  const deps = { policy: () => policy, audit: new AuditLog(jetstream(nc)), log };

  const service = serve(nc, {
    subject: Subjects.POLICY_DECIDE,
    queue: QueueGroups.POLICY,
    contract: PolicyDecideContract,
    log,
    handle: (request, context) => decide(deps, request, context.authorization),
  });
  log.info({ subject: Subjects.POLICY_DECIDE }, "serving policy decisions");

  return {
    async close() {
      await service.stop();
      await nc.drain();
      await telemetry.shutdown();
    },
  };
});
