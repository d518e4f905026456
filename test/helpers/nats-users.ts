import { randomUUID } from "node:crypto";
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import type { NatsConnection, NodeConnectionOptions } from "@nats-io/transport-node";
import { type ServiceName, type Stack, startStack } from "../../services/cli/stack.ts";
import { REPO_ROOT } from "./loom.ts";
import { connectTo, type NatsServer, startNatsServer } from "./nats-server.ts";
import { TEST_AUTH_ENV } from "./tokens.ts";

/** The users of infra/nats/nats-server.conf, each with the variable it reads the password from. */
const PASSWORD_VARIABLES = {
  orchestrator: "LOOM_NATS_ORCHESTRATOR_PASSWORD",
  "acp-policy": "LOOM_NATS_ACP_POLICY_PASSWORD",
  "mcp-worker": "LOOM_NATS_MCP_WORKER_PASSWORD",
  "llm-agent": "LOOM_NATS_LLM_AGENT_PASSWORD",
  submitter: "LOOM_NATS_SUBMITTER_PASSWORD",
  "policy-admin": "LOOM_NATS_POLICY_ADMIN_PASSWORD",
} as const;
export type NatsUser = keyof typeof PASSWORD_VARIABLES;

/** A nats-server with Loom's users and subject permissions, each user with a fresh password. */
export interface NatsUsersServer extends AsyncDisposable {
  readonly server: NatsServer;
  /** `nats://<user>:<password>@127.0.0.1:<port>`, for a service or the CLI's `--nats`. */
  urlAs(user: NatsUser): string;
  password(user: NatsUser): string;
  connectAs(user: NatsUser, options?: NodeConnectionOptions): Promise<NatsConnection>;
  /**
   * Starts each service as a stack of its own, connected as the NATS user of its name, so every
   * service lives under its own permissions. The caller stops the stacks.
   */
  startServices(
    services: readonly ServiceName[],
    options: { logDir: string; env?: Record<string, string> },
  ): Promise<Stack[]>;
}

export async function startNatsWithUsers(): Promise<NatsUsersServer> {
  // nats-server parses a variable's value as config: a password must start with a letter.
  const passwords = Object.fromEntries(
    Object.values(PASSWORD_VARIABLES).map((variable) => [variable, `pw${randomUUID().replaceAll("-", "")}`]),
  );
  // The server reads the passwords from its environment, which it inherits from this process.
  Object.assign(process.env, passwords);
  const server = await startNatsServer({ args: ["-c", join(REPO_ROOT, "infra/nats/nats-server.conf")] });
  const password = (user: NatsUser) => passwords[PASSWORD_VARIABLES[user]] as string;
  const urlAs = (user: NatsUser) => server.url.replace("nats://", `nats://${user}:${password(user)}@`);
  return {
    server,
    urlAs,
    password,
    connectAs: (user, options = {}) => connectTo(server.url, { user, pass: password(user), ...options }),
    async startServices(services, { logDir, env = {} }) {
      const stacks: Stack[] = [];
      try {
        for (const service of services) {
          stacks.push(
            await startStack({
              natsUrl: urlAs(service),
              logDir,
              services: [service],
              env: { ...TEST_AUTH_ENV, LOOM_HTTP_PORT: "0", ...env },
            }),
          );
        }
      } catch (error) {
        // The caller never sees these stacks, so they are stopped here.
        await Promise.all(stacks.map((stack) => stack.stop()));
        throw error;
      }
      return stacks;
    },
    [Symbol.asyncDispose]: () => server[Symbol.asyncDispose](),
  };
}

/** Every service log in `logDir`, joined: tests look in it for nats-server's "Permissions Violation". */
export async function serviceLogs(logDir: string): Promise<string> {
  const logs = await Promise.all((await readdir(logDir)).map((name) => readFile(join(logDir, name), "utf8")));
  return logs.join("\n");
}
