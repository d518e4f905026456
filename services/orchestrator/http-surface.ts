import { type JetStreamManager, jetstream } from "@nats-io/jetstream";
import type { KV } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/transport-node";
import { authenticate, type JsonSchemaValidator, type Logger } from "../kit/index.ts";
import { buildAgentCard } from "./a2a/agent-card.ts";
import { a2aApp } from "./a2a/http-edge.ts";
import { NatsA2ARequestHandler } from "./a2a/nats-request-handler.ts";
import { PushRegistry, startPushNotifier } from "./a2a/push-notifications.ts";
import { WebhookAllowList } from "./a2a/webhook-url.ts";
import { devSignInDataDir, type OrchestratorConfig } from "./config.ts";
import { RunChanges } from "./console/live.ts";
import { consoleRouter } from "./console/router.ts";
import type { HttpApp } from "./http-listener.ts";
import {
  FederatedCatalog,
  GatewayPolicy,
  issuerUrlOf,
  mcpGatewayRouter,
  SessionStore,
  SessionStreams,
} from "./mcp-gateway/index.ts";
import type { RunStore } from "./run-store.ts";
import type { WorkflowCatalog } from "./workflow-catalog.ts";

/** What the orchestrator's HTTP side is made of: its bus, stores and settings. */
export interface HttpSurfaceOptions {
  nc: NatsConnection;
  jsm: JetStreamManager;
  config: OrchestratorConfig;
  buckets: { push: KV; tools: KV; catalog: KV; sessions: KV; runs: KV };
  runs: RunStore;
  workflows: WorkflowCatalog;
  validator: JsonSchemaValidator;
  /** Where callers reach the edge, for the Agent Card. */
  publicUrl: string;
  log: Logger;
}

/**
 * Everything behind the orchestrator's HTTP edge: the A2A edge with its push notifications, the MCP
 * gateway and the console. `main.ts` loads this module only once the bus side is ready (see
 * `listenHttpEdge`).
 */
export async function openHttpSurface(options: HttpSurfaceOptions): Promise<HttpApp> {
  const { nc, jsm, config, buckets, runs, workflows, validator, log } = options;
  const js = jetstream(nc);
  const push = await PushRegistry.open(
    buckets.push,
    WebhookAllowList.parse(config.LOOM_A2A_WEBHOOK_ALLOW),
    log,
  );
  const pushNotifier = await startPushNotifier({ js, jsm, registry: push, log });
  const card = () =>
    buildAgentCard({
      validator,
      publicUrl: options.publicUrl,
      workflows: workflows.ids().map((id) => workflows.resolve(id)),
      version: "0.1.0",
    });
  const mcpCatalog = await FederatedCatalog.open({ tools: buckets.tools, catalog: buckets.catalog }, log);
  const gateway = {
    catalog: mcpCatalog,
    policy: new GatewayPolicy(nc, config.LOOM_POLICY_TIMEOUT_MS),
    sessions: new SessionStore(buckets.sessions),
    dispatch: {
      nc,
      policyTimeoutMs: config.LOOM_POLICY_TIMEOUT_MS,
      callTimeoutMs: config.LOOM_STEP_TIMEOUT_MS,
      elicitationTimeoutMs: config.LOOM_ELICITATION_TIMEOUT_MS,
      log,
    },
    version: "0.1.0",
  };
  const sessionStreams = new SessionStreams(gateway);
  const mcpGateway = mcpGatewayRouter({
    ...gateway,
    streams: sessionStreams,
    allowedOrigins: config.LOOM_MCP_ALLOWED_ORIGINS,
    publicUrl: config.LOOM_A2A_PUBLIC_URL,
    authorizationServer: issuerUrlOf(config.LOOM_AUTH_ISSUER),
    policyTimeoutMs: config.LOOM_POLICY_TIMEOUT_MS,
    log,
  });
  const runChanges = new RunChanges(buckets.runs, log);
  const webConsole = consoleRouter({
    nc,
    js,
    runs,
    changes: runChanges,
    workflows: () => workflows.ids(),
    jaegerUi: config.LOOM_JAEGER_UI,
    devSignInDataDir: devSignInDataDir(config),
    policyTimeoutMs: config.LOOM_POLICY_TIMEOUT_MS,
    log,
  });
  const app = a2aApp({
    handler: new NatsA2ARequestHandler({
      nc,
      js,
      jsm,
      runs,
      push,
      card,
      policyTimeoutMs: config.LOOM_POLICY_TIMEOUT_MS,
    }),
    card,
    authenticate: (authorization) => authenticate(nc, authorization, config.LOOM_POLICY_TIMEOUT_MS),
    log,
    routes: [mcpGateway, webConsole],
  });
  return {
    handle: (req, res) => app(req, res),
    async close() {
      sessionStreams.close();
      runChanges.stop();
      mcpCatalog.close();
      pushNotifier.stop();
      push.close();
    },
  };
}
