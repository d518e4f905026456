import { type JetStreamManager, jetstream } from "@nats-io/jetstream";
import type { KV } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/transport-node";
import { authenticate, type JsonSchemaValidator, type Logger, type MuxedRequests } from "../kit/index.ts";
import { buildAgentCard } from "./a2a/agent-card.ts";
import { a2aApp } from "./a2a/http-edge.ts";
import { NatsA2ARequestHandler } from "./a2a/nats-request-handler.ts";
import type { OutboundAllowList } from "./a2a/outbound-url.ts";
import { PushRegistry, startPushNotifier } from "./a2a/push-notifications.ts";
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
  /** `LOOM_A2A_WEBHOOK_ALLOW`, parsed when the service started: a bad entry fails the start, not this. */
  webhookAllowList: OutboundAllowList;
  buckets: { push: KV; tools: KV; catalog: KV; sessions: KV; runs: KV };
  runs: RunStore;
  workflows: WorkflowCatalog;
  validator: JsonSchemaValidator;
  /** Where the worker answers the MCP gateway's tool tasks. */
  toolTasks: MuxedRequests;
  /** Where callers reach the edge, for the Agent Card. */
  publicUrl: string;
  log: Logger;
}

/**
 * Everything behind the orchestrator's HTTP edge: the A2A edge with its push notifications, the MCP
 * gateway and the console. `main.ts` loads this module only once the bus side is ready (see
 * `listenHttpEdge`). When one part fails to open, the parts opened before it are closed again
 * before the error goes up: the edge tries again at its next request, and must not pile up
 * watchers and consumers at each try.
 */
export async function openHttpSurface(options: HttpSurfaceOptions): Promise<HttpApp> {
  const opened: Array<() => void> = [];
  const closeOpened = () => {
    for (const close of opened.splice(0).reverse()) close();
  };
  try {
    const handle = await openParts(options, opened);
    return {
      handle,
      close: async () => closeOpened(),
    };
  } catch (error) {
    closeOpened();
    throw error;
  }
}

/** Opens each part, adding how to close it to `opened` as soon as it is open. */
async function openParts(options: HttpSurfaceOptions, opened: Array<() => void>): Promise<HttpApp["handle"]> {
  const { nc, jsm, config, buckets, runs, workflows, validator, log } = options;
  const js = jetstream(nc);
  const push = await PushRegistry.open(buckets.push, options.webhookAllowList, log);
  opened.push(() => push.close());
  const pushNotifier = await startPushNotifier({ js, jsm, registry: push, log });
  opened.push(() => pushNotifier.stop());
  const card = () =>
    buildAgentCard({
      validator,
      publicUrl: options.publicUrl,
      workflows: workflows.ids().map((id) => workflows.resolve(id)),
      version: "0.1.0",
    });
  const mcpCatalog = await FederatedCatalog.open({ tools: buckets.tools, catalog: buckets.catalog }, log);
  opened.push(() => mcpCatalog.close());
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
      toolTasks: options.toolTasks,
    },
    version: "0.1.0",
  };
  const sessionStreams = new SessionStreams(gateway);
  opened.push(() => sessionStreams.close());
  const mcpGateway = mcpGatewayRouter({
    ...gateway,
    streams: sessionStreams,
    publicUrl: config.LOOM_A2A_PUBLIC_URL,
    authorizationServer: issuerUrlOf(config.LOOM_AUTH_ISSUER),
    policyTimeoutMs: config.LOOM_POLICY_TIMEOUT_MS,
    log,
  });
  const runChanges = new RunChanges(buckets.runs, log);
  opened.push(() => runChanges.stop());
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
  return (req, res) => app(req, res);
}
