import { connect, type NatsConnection } from "@nats-io/transport-node";
import type { Logger } from "./logger.ts";
import { recordNatsStatus } from "./metrics.ts";
import { natsServerOptions } from "./nats-url.ts";

export interface NatsOptions {
  servers: string;
  /** Connection name shown by the server's monitoring. */
  name: string;
  log: Logger;
}

/** Connections that are between a disconnect and the next reconnect. */
const disconnected = new WeakSet<NatsConnection>();

/**
 * Connects for the life of a service: waits for a broker that is not up yet, reconnects forever
 * when it goes away, and logs and counts every change of connection status.
 */
export async function connectNats(options: NatsOptions): Promise<NatsConnection> {
  const nc = await connect({
    ...natsServerOptions(options.servers),
    name: options.name,
    waitOnFirstConnect: true,
    maxReconnectAttempts: -1,
    reconnectTimeWait: 500,
    // Otherwise every request builds an Error up front for the stack of a timeout it rarely has:
    // a cost on every round trip of the hot path. Our errors carry their own context instead.
    noAsyncTraces: true,
  });
  recordNatsStatus("connect");
  void watchStatus(nc, options.log);
  options.log.info({ server: nc.getServer() }, "connected to NATS");
  return nc;
}

/** False while the connection is lost and being re-established, or once it is closed. */
export function isNatsConnected(nc: NatsConnection): boolean {
  return !nc.isClosed() && !disconnected.has(nc);
}

async function watchStatus(nc: NatsConnection, log: Logger): Promise<void> {
  for await (const status of nc.status()) {
    if (status.type === "disconnect" || status.type === "reconnect" || status.type === "error") {
      if (status.type === "disconnect") disconnected.add(nc);
      if (status.type === "reconnect") disconnected.delete(nc);
      recordNatsStatus(status.type);
      // An error status is most often nats-server refusing a subject to this service's user: the
      // operator needs its text (which subject) to mend the user's permissions.
      log.warn(
        {
          nats_status: status.type,
          server: "server" in status ? status.server : undefined,
          err: status.type === "error" ? status.error : undefined,
        },
        "NATS connection status",
      );
    }
  }
}
