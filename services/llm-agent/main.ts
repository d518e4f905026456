import { AuditKind } from "../../schemas/audit.ts";
import { AgentTaskContract } from "../../schemas/contracts.ts";
import { agentTasksSubject, Buckets, LLM_AGENT } from "../../schemas/subjects.ts";
import { AuditLog } from "../kit/audit-chain.ts";
import { GRANT_USE_MEMORY_MS, GrantCheck } from "../kit/grant-check.ts";
import {
  connectNats,
  createLogger,
  openBucket,
  runUntilSignalled,
  serve,
  startObservability,
  streamReplicas,
} from "../kit/index.ts";
import { readLlmAgentConfig } from "./config.ts";
import { createLocalModel } from "./local-model.ts";
import { createOpenAiAdapter } from "./openai-adapter.ts";
import { handleSamplingTask } from "./sampling-task.ts";

const SERVICE = "llm-agent";
const config = readLlmAgentConfig();
const log = createLogger({ service: SERVICE, level: config.LOG_LEVEL, format: config.LOG_FORMAT });

await runUntilSignalled(log, async () => {
  const observability = await startObservability({ service: SERVICE, config, log });
  const model =
    config.LOOM_LLM_BASE_URL === undefined
      ? createLocalModel()
      : createOpenAiAdapter({
          baseUrl: config.LOOM_LLM_BASE_URL,
          apiKey: config.LOOM_LLM_API_KEY,
          model: config.LOOM_LLM_MODEL,
          timeoutMs: config.LOOM_LLM_TIMEOUT,
        });
  const nc = await connectNats({
    servers: config.NATS_URL,
    name: SERVICE,
    log,
    passwordFile: config.LOOM_NATS_PASSWORD_FILE,
  });
  const replicas = streamReplicas(nc, config.LOOM_STREAM_REPLICAS);
  const [keys, uses] = await Promise.all([
    openBucket(nc, Buckets.GRANT_KEYS, { replicas }),
    openBucket(nc, Buckets.GRANT_USES, { ttlMs: GRANT_USE_MEMORY_MS, replicas }),
    observability.connected({ nc, streams: [], buckets: [Buckets.GRANT_KEYS] }),
  ]);
  const grants = new GrantCheck({
    keys,
    uses,
    audit: new AuditLog(nc, SERVICE, replicas),
    log,
    executionKind: AuditKind.LLM_ANSWER,
  });
  const subject = agentTasksSubject(LLM_AGENT);
  const service = serve(nc, {
    subject,
    queue: LLM_AGENT,
    contract: AgentTaskContract,
    log,
    handle: (message) =>
      grants.audited(message, () =>
        handleSamplingTask({ model, grants, log }, message, AbortSignal.timeout(config.LOOM_LLM_TIMEOUT)),
      ),
  });
  log.info(
    { subject, model: model.name, provider: config.LOOM_LLM_BASE_URL ?? "local" },
    "serving sampling requests",
  );
  return {
    async close() {
      await service.stop();
      await observability.close();
      await nc.drain();
    },
  };
});
