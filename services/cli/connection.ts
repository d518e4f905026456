import { setTimeout as sleep } from "node:timers/promises";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import type { z } from "zod";
import type { RequestContract } from "../../schemas/contracts.ts";
import { ErrorCode, RETRYABLE_CODES } from "../../schemas/errors.ts";
import { Headers } from "../../schemas/subjects.ts";
import { LoomError, request } from "../kit/index.ts";

/** How long such a request waits out an orchestrator that is (re)starting before it reports it unavailable. */
const READ_RETRY_MS = 20_000;
const READ_TIMEOUT_MS = 10_000;

import { natsServerOptions } from "../kit/nats-url.ts";

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
    throw new LoomError(
      ErrorCode.AGENT_UNAVAILABLE,
      `cannot reach NATS at ${servers}: set NATS_URL or --nats, or start Loom with \`npm start\``,
      { cause },
    );
  }
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
