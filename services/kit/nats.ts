import { connect, type NatsConnection } from "@nats-io/transport-node";
import type { Logger } from "./logger.ts";

export interface NatsOptions {
  servers: string;
  /** Connection name shown by the server's monitoring. */
  name: string;
  log: Logger;
}

/**
 * Connects for the life of a service: waits for a broker that is not up yet, reconnects forever
 * when it goes away, and logs every change of connection status.
 */
export async function connectNats(options: NatsOptions): Promise<NatsConnection> {
  const nc = await connect({
    servers: options.servers.split(","),
    name: options.name,
    waitOnFirstConnect: true,
    maxReconnectAttempts: -1,
    reconnectTimeWait: 500,
  });
  void logStatus(nc, options.log);
  options.log.info({ server: nc.getServer() }, "connected to NATS");
  return nc;
}

async function logStatus(nc: NatsConnection, log: Logger): Promise<void> {
  for await (const status of nc.status()) {
    if (status.type === "disconnect" || status.type === "reconnect" || status.type === "error") {
      log.warn(
        { nats_status: status.type, server: "server" in status ? status.server : undefined },
        "NATS connection status",
      );
    }
  }
}
