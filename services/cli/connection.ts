import { connect, type NatsConnection } from "@nats-io/transport-node";
import { ErrorCode } from "../../schemas/errors.ts";
import { LoomError } from "../kit/index.ts";
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
