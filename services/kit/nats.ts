import { readFile } from "node:fs/promises";
import { parseEnv } from "node:util";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { ErrorCode } from "../../schemas/errors.ts";
import {
  inboxPrefixOf,
  NATS_PASSWORD_VARIABLES,
  NatsPasswordFileSchema,
  type NatsUser,
} from "../../schemas/nats-users.ts";
import { LoomError } from "./errors.ts";
import type { Logger } from "./logger.ts";
import { recordNatsStatus } from "./metrics.ts";
import { withMuxedRequests } from "./muxed-requests.ts";
import { natsServerOptions } from "./nats-url.ts";

export interface NatsOptions {
  servers: string;
  /** Connection name shown by the server's monitoring, and the service's NATS user. */
  name: NatsUser;
  log: Logger;
  /** LOOM_NATS_PASSWORD_FILE: the users' passwords, of which the service takes its own. */
  passwordFile?: string | undefined;
}

/** Connections that are between a disconnect and the next reconnect. */
const disconnected = new WeakSet<NatsConnection>();

/**
 * Connects for the life of a service: waits for a broker that is not up yet, reconnects forever
 * when it goes away, and logs and counts every change of connection status.
 */
export async function connectNats(options: NatsOptions): Promise<NatsConnection> {
  const serverOptions = await serverOptionsFor(options);
  const connection = await connect({
    ...serverOptions,
    name: options.name,
    waitOnFirstConnect: true,
    maxReconnectAttempts: -1,
    reconnectTimeWait: 500,
    // Otherwise every request builds an Error up front for the stack of a timeout it rarely has:
    // a cost on every round trip of the hot path. Our errors carry their own context instead.
    noAsyncTraces: true,
  });
  // And every request it settles builds a RequestError anyway, with a timer of its own: one inbox
  // for all the answers instead (see MuxedRequests).
  const nc = withMuxedRequests(connection, serverOptions.inboxPrefix);
  recordNatsStatus("connect");
  void watchStatus(nc, options.log);
  options.log.info({ server: nc.getServer() }, "connected to NATS");
  return nc;
}

/** The URL's servers and credentials, or the service's own user with its password from the file. */
async function serverOptionsFor(options: NatsOptions): Promise<ReturnType<typeof natsServerOptions>> {
  const fromUrl = natsServerOptions(options.servers);
  if (options.passwordFile === undefined || fromUrl.user !== undefined) return fromUrl;
  const variable = NATS_PASSWORD_VARIABLES[options.name];
  let text: string;
  try {
    text = await readFile(options.passwordFile, "utf8");
  } catch (error) {
    throw new LoomError(
      ErrorCode.CONFIG_INVALID,
      `LOOM_NATS_PASSWORD_FILE ${options.passwordFile} cannot be read (${(error as Error).message}): make it with \`loom nats passwords\``,
    );
  }
  const parsed = NatsPasswordFileSchema.shape[variable].safeParse(parseEnv(text)[variable]);
  if (!parsed.success) {
    throw new LoomError(
      ErrorCode.CONFIG_INVALID,
      `LOOM_NATS_PASSWORD_FILE ${options.passwordFile} has no valid ${variable}: make the file again with \`loom nats passwords\``,
    );
  }
  const user = options.name;
  return { ...fromUrl, user, pass: parsed.data, inboxPrefix: inboxPrefixOf(user) };
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
