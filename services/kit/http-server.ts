import type { RequestListener, Server } from "node:http";
import type { AddressInfo } from "node:net";
import type { JetStreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { guardRequests, type HttpAllowList } from "./http-guard.ts";
import type { Logger } from "./logger.ts";
import { registry } from "./metrics.ts";
import { isNatsConnected } from "./nats.ts";

/**
 * node:http's `createServer`. An `import` of node:http builds its ESM namespace from every export,
 * and so loads undici (fetch, WebSocket) through their getters: some 35 ms of CPU at every start of
 * every service. The module object itself does not.
 */
export const { createServer: createHttpServer } = process.getBuiltinModule("node:http");

/** Default ports, one per service, so a whole stack can run on one host without settings. */
export const DefaultHttpPorts = {
  orchestrator: 9461,
  "acp-policy": 9462,
  "mcp-worker": 9463,
  "llm-agent": 9464,
} as const;

/** The orchestrator's A2A edge (and MCP gateway) port when none is configured. */
export const DEFAULT_A2A_PORT = 7410;

/** What `/readyz` checks: the connection, and that the streams and KV buckets a service uses exist. */
export interface Readiness {
  nc: NatsConnection;
  jsm: JetStreamManager;
  streams: readonly string[];
  buckets: readonly string[];
}

export interface OpsServer {
  /** The port it listens on (the one picked when configured with 0). */
  port: number;
  close(): Promise<void>;
}

/**
 * Serves `/metrics` (Prometheus text format), `/healthz` (the process is up) and `/readyz` (it can
 * do its work: connected to NATS, its streams and buckets exist). Ready is `undefined` until the
 * service has connected, which `/readyz` reports as not ready. A request whose Host or Origin the
 * allow-list refuses is answered before any of them (see `requestRefusal`).
 */
export async function startOpsServer(options: {
  host: string;
  port: number;
  allowed: HttpAllowList;
  log: Logger;
  readiness: () => Readiness | undefined;
}): Promise<OpsServer> {
  const handle: RequestListener = (req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    const reply = (status: number, body: string, type = "text/plain; charset=utf-8") => {
      res.writeHead(status, { "content-type": type }).end(body);
    };
    if (req.method !== "GET" && req.method !== "HEAD") return reply(405, "method not allowed\n");
    if (path === "/healthz") return reply(200, "ok\n");
    if (path === "/readyz") {
      void whyNotReady(options.readiness()).then(
        (problem) => (problem === undefined ? reply(200, "ready\n") : reply(503, `not ready: ${problem}\n`)),
        (error: unknown) => reply(503, `not ready: ${String(error)}\n`),
      );
      return;
    }
    if (path === "/metrics") {
      void registry.metrics().then(
        (text) => reply(200, text, registry.contentType),
        (error: unknown) => {
          options.log.error({ err: error }, "collecting metrics failed");
          reply(500, "collecting metrics failed\n");
        },
      );
      return;
    }
    reply(404, "not found: try /metrics, /healthz or /readyz\n");
  };
  const server: Server = createHttpServer(guardRequests(options.allowed, handle));
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port, options.host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  options.log.info(
    { host: options.host, port, paths: ["/metrics", "/healthz", "/readyz"] },
    "serving metrics and health",
  );
  return {
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

async function whyNotReady(readiness: Readiness | undefined): Promise<string | undefined> {
  if (readiness === undefined) return "starting";
  if (readiness.nc.isClosed()) return "NATS connection closed";
  if (!isNatsConnected(readiness.nc)) return "not connected to NATS";
  for (const stream of readiness.streams) {
    if (!(await exists(readiness.jsm, stream))) return `stream ${stream} missing`;
  }
  for (const bucket of readiness.buckets) {
    if (!(await exists(readiness.jsm, `KV_${bucket}`))) return `KV bucket ${bucket} missing`;
  }
  return undefined;
}

async function exists(jsm: JetStreamManager, stream: string): Promise<boolean> {
  try {
    await jsm.streams.info(stream);
    return true;
  } catch {
    return false;
  }
}
