import { setTimeout as sleep } from "node:timers/promises";
import { JetStreamApiCodes, JetStreamApiError, jetstreamManager } from "@nats-io/jetstream";
import { AuthorizationError, connect, type NatsConnection } from "@nats-io/transport-node";
import type { z } from "zod";
import type { RequestContract } from "../../schemas/contracts.ts";
import { ErrorCode, RETRYABLE_CODES } from "../../schemas/errors.ts";
import { NATS_PASSWORD_VARIABLES } from "../../schemas/nats-users.ts";
import { Headers, Streams } from "../../schemas/subjects.ts";
import { LoomError, request } from "../kit/index.ts";
import { natsServerOptions } from "../kit/nats-url.ts";

/** How long such a request waits out an orchestrator that is (re)starting before it reports it unavailable. */
const READ_RETRY_MS = 20_000;
const READ_TIMEOUT_MS = 10_000;

/** A short-lived connection for one command: fail fast with a hint instead of waiting forever. */
export async function connectCli(url: string): Promise<NatsConnection> {
  const { servers, ...credentials } = natsServerOptions(url);
  try {
    return await connect({
      servers,
      ...credentials,
      name: "loom-cli",
      timeout: 5_000,
      maxReconnectAttempts: 3,
    });
  } catch (cause) {
    if (cause instanceof AuthorizationError) {
      throw new LoomError(ErrorCode.NATS_AUTH_FAILED, natsAuthHint(servers.join(","), credentials.user), {
        cause,
      });
    }
    throw new LoomError(
      ErrorCode.AGENT_UNAVAILABLE,
      `cannot reach NATS at ${servers}: set NATS_URL or --nats, or start Loom with \`npm start\``,
      { cause },
    );
  }
}

/** What to do when NATS refuses a user: which users Loom has and where their passwords come from. */
export function natsAuthHint(servers: string, user: string | undefined): string {
  const refused = user === undefined ? "wants a user and password" : `refused the password of user ${user}`;
  return (
    `NATS at ${servers} ${refused}. Loom's users are those of infra/nats/nats-server.conf (` +
    `${Object.keys(NATS_PASSWORD_VARIABLES).join(", ")}); the CLI connects as submitter, or policy-admin ` +
    "for policy apply and audit. Give it the password in LOOM_NATS_SUBMITTER_PASSWORD " +
    "(LOOM_NATS_POLICY_ADMIN_PASSWORD) or in the URL (nats://submitter:<password>@host:4222); " +
    "a NATS started by `npm start` keeps them in .loom/nats-users.env"
  );
}

/**
 * A command's failure as its user should read it. A NATS on which Loom never ran has none of its
 * streams, which the NATS client reports as "jetstream is not enabled" or "stream not found": say
 * which it is and how to start Loom instead. `natsUrl` gives the URL with a user's credentials,
 * asked for only when that check is needed.
 */
export async function explainFailure(
  error: unknown,
  natsUrl: () => Promise<string>,
): Promise<LoomError | Error> {
  // Nothing answering an API request may also mean Loom never ran on this NATS.
  const unserved = error instanceof LoomError && error.code === ErrorCode.AGENT_UNAVAILABLE;
  if (!unserved && (error instanceof LoomError || !missesAStream(error))) {
    return error instanceof Error ? error : new Error(String(error));
  }
  const url = await natsUrl();
  const { servers } = natsServerOptions(url);
  const found = await loomStreamsOn(url);
  if (unserved && (found === "streams" || found === "unknown")) return error;
  const message =
    found === "no-jetstream"
      ? `JetStream is not enabled on the NATS at ${servers}: start nats-server with -js (or let \`npm start\` start one)`
      : `NATS at ${servers} has none of Loom's streams (${Streams.RUNS}, ${Streams.EVENTS}, …): Loom's services were never started on it. Start Loom with \`npm start\` (NATS_URL=${servers} npm start uses this NATS), or point --nats / NATS_URL at the NATS Loom runs on`;
  return new LoomError(ErrorCode.AGENT_UNAVAILABLE, message, { cause: error });
}

/**
 * What the NATS at `url` has of Loom: no JetStream API (jetstreamManager checks it on creation), no
 * stream at all, some streams, or unknown (unreachable, or the account info refused).
 */
async function loomStreamsOn(url: string): Promise<"no-jetstream" | "no-streams" | "streams" | "unknown"> {
  let nc: NatsConnection;
  try {
    nc = await connectCli(url);
  } catch {
    return "unknown";
  }
  try {
    let jsm: Awaited<ReturnType<typeof jetstreamManager>>;
    try {
      jsm = await jetstreamManager(nc);
    } catch {
      return "no-jetstream";
    }
    const account = await jsm.getAccountInfo().catch(() => undefined);
    if (account === undefined) return "unknown";
    return account.streams === 0 ? "no-streams" : "streams";
  } finally {
    await nc.close();
  }
}

function missesAStream(error: unknown): boolean {
  for (let current = error; current instanceof Error; current = current.cause) {
    if (current.name === "JetStreamNotEnabled" || current.message === "stream not found") return true;
    if (current instanceof JetStreamApiError && current.code === JetStreamApiCodes.StreamNotFound)
      return true;
  }
  return false;
}

/** The `Authorization` header value for the CLI's `--token` (or LOOM_TOKEN), if it has one (an empty one is none). */
export function bearerOf(token: string | undefined): string | undefined {
  return token === undefined || token === "" ? undefined : `Bearer ${token}`;
}

/**
 * A request to the orchestrators' authorised API (a read, or forgetting a memory) on behalf of `token`: an orchestrator restarting
 * (no responder, a timeout) is waited out for a while, as reading a stored record always could.
 */
export async function requestAs<Req extends z.ZodType, Res extends z.ZodType>(
  nc: NatsConnection,
  subject: string,
  contract: RequestContract<Req, Res>,
  body: z.input<Req>,
  token: string | undefined,
): Promise<z.infer<Res>> {
  const giveUpAt = Date.now() + READ_RETRY_MS;
  for (;;) {
    try {
      return await request(nc, subject, contract, body, {
        timeoutMs: READ_TIMEOUT_MS,
        headers: { [Headers.AUTHORIZATION]: bearerOf(token) },
      });
    } catch (error) {
      if (!(error instanceof LoomError) || !RETRYABLE_CODES.has(error.code) || Date.now() > giveUpAt)
        throw error;
      await sleep(200);
    }
  }
}
