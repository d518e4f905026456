import {
  DevJwksContract,
  DevTokenContract,
  PolicyAuthenticateContract,
  PolicyDecideContract,
  PolicyExplainContract,
  PolicyMasksContract,
  PolicyPermittedContract,
  PolicyTaskContract,
} from "../../schemas/contracts.ts";
import { inboxPrefixOf } from "../../schemas/nats-users.ts";
import { Buckets, QueueGroups, Subjects } from "../../schemas/subjects.ts";
import { AuditLog } from "../kit/audit-chain.ts";
import { ensureDevIssuerKey } from "../kit/dev-issuer.ts";
import {
  connectNats,
  createLogger,
  ensureStream,
  JsonSchemaValidator,
  natsServerOptions,
  openBucket,
  openJetStreamManager,
  runUntilSignalled,
  StreamDefinitions,
  serve,
  startObservability,
  streamReplicas,
} from "../kit/index.ts";
import { AnomalyDetector } from "./anomalies.ts";
import { isDevMode, readPolicyServiceConfig, tokenVerifierOptions } from "./config.ts";
import { decide, explain } from "./decide.ts";
import { observeDecision } from "./decision-telemetry.ts";
import { DevAuthorization, readDevClients } from "./dev-authorization.ts";
import { authenticate, permitted, policyMasks } from "./gateway-checks.ts";
import { GrantSigner } from "./grant-signer.ts";
import { PolicyStore } from "./policy-store.ts";
import { RateLimiter } from "./rate-limiter.ts";
import { RegistryView } from "./registry-view.ts";
import { TaskForwarder } from "./task-forwarding.ts";
import { createTokenVerifier } from "./token-verifier.ts";

const SERVICE = "acp-policy";
const config = readPolicyServiceConfig();
const log = createLogger({ service: SERVICE, level: config.LOG_LEVEL, format: config.LOG_FORMAT });

await runUntilSignalled(log, async () => {
  const observability = await startObservability({ service: SERVICE, config, log });
  const nc = await connectNats({
    servers: config.NATS_URL,
    name: SERVICE,
    log,
    passwordFile: config.LOOM_NATS_PASSWORD_FILE,
  });
  const replicas = streamReplicas(nc, config.LOOM_STREAM_REPLICAS);
  // Independent set-up steps at once, not one round trip after another: a replica that replaces a
  // crashed one is worth only as much as it is quick to start.
  const [grantKeys, policyKv, tools, catalog] = await Promise.all([
    openBucket(nc, Buckets.GRANT_KEYS, { replicas }),
    openBucket(nc, Buckets.POLICY, { replicas, history: 10 }),
    openBucket(nc, Buckets.TOOLS, { replicas }),
    openBucket(nc, Buckets.CATALOG, { replicas }),
    openJetStreamManager(nc).then((jsm) => ensureStream(jsm, StreamDefinitions.audit, replicas)),
  ]);
  const [tokens, policy, grants] = await Promise.all([
    createTokenVerifier({ ...tokenVerifierOptions(config), runTokenKeys: grantKeys }),
    PolicyStore.open({ kv: policyKv, dir: config.LOOM_POLICY_DIR, log }),
    GrantSigner.create(grantKeys, config.LOOM_GRANT_TTL),
    observability.connected({ nc, streams: [StreamDefinitions.audit.name], buckets: [] }),
  ]);
  const deps = {
    policy,
    tokens,
    registry: await RegistryView.open({ tools, catalog }, log),
    validator: new JsonSchemaValidator(),
    grants,
    rates: new RateLimiter(),
    anomalies: new AnomalyDetector({ nc, log, burst: config.LOOM_ANOMALY_BURST }),
    audit: new AuditLog(nc, SERVICE, replicas),
    log,
    defaultRegion: config.LOOM_REGION,
    runTokenTtlMs: config.LOOM_RUN_TOKEN_TTL,
  };

  const service = serve(nc, {
    subject: Subjects.POLICY_DECIDE,
    queue: QueueGroups.POLICY,
    contract: PolicyDecideContract,
    log,
    handle: (request, context) =>
      observeDecision(request, () => decide(deps, request, context.authorization)),
  });
  // Only the orchestrator's NATS user may publish here: the one place a run token is accepted.
  const runDecisions = serve(nc, {
    subject: Subjects.POLICY_DECIDE_RUN,
    queue: QueueGroups.POLICY,
    contract: PolicyDecideContract,
    log,
    handle: (request, context) =>
      observeDecision(request, () => decide(deps, request, context.authorization, "run")),
  });
  // Tool tasks on their way to the worker: decided here, forwarded with their grant on allow.
  const forwarder = new TaskForwarder(
    { ...deps, nc },
    // Its own user's inbox, whether the user is named in NATS_URL or taken from the password file.
    inboxPrefixOf(natsServerOptions(config.NATS_URL).user ?? SERVICE),
  );
  const taskIntents = (["public", "run"] as const).map((channel) =>
    serve(nc, {
      subject: channel === "run" ? Subjects.POLICY_TASKS_RUN : Subjects.POLICY_TASKS,
      queue: QueueGroups.POLICY,
      contract: PolicyTaskContract,
      log,
      handle: (intent, context) => forwarder.forward(intent, context, channel),
    }),
  );
  const explaining = serve(nc, {
    subject: Subjects.POLICY_EXPLAIN,
    queue: QueueGroups.POLICY,
    contract: PolicyExplainContract,
    log,
    handle: (request, context) => explain(deps, request, context.authorization),
  });
  // The MCP gateway's OAuth endpoints in dev mode; outside it, both subjects answer DEV_MODE_ONLY.
  const devMode = isDevMode(config);
  const devAuthorization = new DevAuthorization({
    key: devMode ? await ensureDevIssuerKey(config.LOOM_DATA_DIR) : undefined,
    clients:
      devMode && config.LOOM_DEV_CLIENTS !== undefined ? await readDevClients(config.LOOM_DEV_CLIENTS) : [],
    issuer: config.LOOM_AUTH_ISSUER,
    audience: config.LOOM_AUTH_AUDIENCE,
    log,
  });
  if (!devMode && config.LOOM_DEV_CLIENTS !== undefined) {
    log.warn("LOOM_DEV_CLIENTS ignored: a JWKS is configured, so this is not dev mode");
  }
  const gatewayChecks = [
    serve(nc, {
      subject: Subjects.POLICY_DEV_TOKEN,
      queue: QueueGroups.POLICY,
      contract: DevTokenContract,
      log,
      handle: (request) => devAuthorization.token(request),
    }),
    serve(nc, {
      subject: Subjects.POLICY_DEV_JWKS,
      queue: QueueGroups.POLICY,
      contract: DevJwksContract,
      log,
      handle: async () => devAuthorization.jwks(),
    }),
    serve(nc, {
      subject: Subjects.POLICY_AUTHENTICATE,
      queue: QueueGroups.POLICY,
      contract: PolicyAuthenticateContract,
      log,
      handle: (_request, context) => authenticate(deps, context.authorization),
    }),
    // The orchestrator renders approval prompts from data masked with every mask policy can require.
    serve(nc, {
      subject: Subjects.POLICY_MASKS,
      queue: QueueGroups.POLICY,
      contract: PolicyMasksContract,
      log,
      handle: async () => policyMasks(deps),
    }),
    serve(nc, {
      subject: Subjects.POLICY_PERMITTED,
      queue: QueueGroups.POLICY,
      contract: PolicyPermittedContract,
      log,
      handle: (request, context) => permitted(deps, request, context.authorization),
    }),
  ];
  log.info(
    {
      subject: Subjects.POLICY_DECIDE,
      policy_version: deps.policy.active.version,
      grant_kid: deps.grants.kid,
    },
    "serving policy decisions",
  );

  return {
    async close() {
      await Promise.all([
        service.stop(),
        runDecisions.stop(),
        ...taskIntents.map((intents) => intents.stop()),
        explaining.stop(),
        ...gatewayChecks.map((check) => check.stop()),
      ]);
      deps.registry.close();
      await observability.close();
      await nc.drain();
    },
  };
});
