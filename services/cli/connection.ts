import { AuthorizationError, connect, type NatsConnection } from "@nats-io/transport-node";
import { ErrorCode } from "../../schemas/errors.ts";
import { NATS_PASSWORD_VARIABLES } from "../../schemas/nats-users.ts";
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
    "for policy apply, workflow apply, memory and audit. Give it the password in LOOM_NATS_SUBMITTER_PASSWORD " +
    "(LOOM_NATS_POLICY_ADMIN_PASSWORD) or in the URL (nats://submitter:<password>@host:4222); " +
    "a NATS started by `npm start` keeps them in .loom/nats-users.env"
  );
}
