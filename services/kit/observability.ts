import type { JetStreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { Streams } from "../../schemas/subjects.ts";
import type { BaseConfig } from "./base-config.ts";
import { type HttpAllowList, httpAllowListOf } from "./http-guard.ts";
import { DefaultHttpPorts, type OpsServer, startOpsServer } from "./http-server.ts";
import { ensureStream, openJetStreamManager, StreamDefinitions, streamReplicas } from "./jetstream.ts";
import type { Logger } from "./logger.ts";
import { setupTelemetry, type Telemetry } from "./telemetry.ts";

export interface Observability {
  telemetry: Telemetry;
  ops: OpsServer;
  /** The Host names and Origins its HTTP listeners answer to: the ops server's, and any other the service opens. */
  httpAllowList: HttpAllowList;
  /**
   * Call once connected: spans start flowing to `LOOM_SPANS`, and `/readyz` answers ready while
   * the connection is up and these streams and buckets exist.
   */
  connected(options: {
    nc: NatsConnection;
    streams: readonly string[];
    buckets: readonly string[];
  }): Promise<void>;
  /** Flushes spans and stops the HTTP server; call before draining the NATS connection. */
  close(): Promise<void>;
}

/** Traces, metrics and health for one service, as its configuration says. */
export async function startObservability(options: {
  service: keyof typeof DefaultHttpPorts;
  config: BaseConfig;
  /** Where callers reach the service, when it says (the orchestrator's LOOM_A2A_PUBLIC_URL): its host and origin are allowed. */
  publicUrl?: string | undefined;
  log: Logger;
}): Promise<Observability> {
  const { config, log } = options;
  const telemetry = setupTelemetry({ service: options.service, config });
  let readiness: Parameters<Observability["connected"]>[0] | undefined;
  let jsm: JetStreamManager | undefined;
  const httpAllowList = httpAllowListOf({ ...config, publicUrl: options.publicUrl });
  const opsOptions = {
    host: config.LOOM_HTTP_HOST,
    allowed: httpAllowList,
    log,
    readiness: () =>
      readiness === undefined || jsm === undefined
        ? undefined
        : { nc: readiness.nc, jsm, streams: readiness.streams, buckets: readiness.buckets },
  };
  const ops = await startOpsServer({
    ...opsOptions,
    port: config.LOOM_HTTP_PORT ?? DefaultHttpPorts[options.service],
  }).catch((error: unknown) => {
    // A port that was asked for must be had; the default one may be taken (a second stack on this
    // host, say), and then any free port does, as the log line with the port says.
    if (config.LOOM_HTTP_PORT !== undefined || (error as NodeJS.ErrnoException).code !== "EADDRINUSE")
      throw error;
    log.warn({ port: DefaultHttpPorts[options.service] }, "default HTTP port in use; taking a free one");
    return startOpsServer({ ...opsOptions, port: 0 });
  });
  return {
    telemetry,
    ops,
    httpAllowList,
    async connected(connection) {
      jsm = await openJetStreamManager(connection.nc);
      if (config.LOOM_TRACE_STREAM) {
        await ensureStream(
          jsm,
          StreamDefinitions.spans,
          streamReplicas(connection.nc, config.LOOM_STREAM_REPLICAS),
        );
        telemetry.publishSpansTo(connection.nc);
      }
      readiness = {
        ...connection,
        streams: config.LOOM_TRACE_STREAM ? [...connection.streams, Streams.SPANS] : connection.streams,
      };
    },
    async close() {
      await ops.close();
      await telemetry.shutdown();
    },
  };
}
