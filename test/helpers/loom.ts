import { execFile } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import type { NatsConnection, NodeConnectionOptions } from "@nats-io/transport-node";
import { NatsUser } from "../../schemas/nats-users.ts";
import { type Stack, startStack, waitUntilReady } from "../../services/cli/stack.ts";
import type { NatsServer } from "./nats-server.ts";
import {
  type NatsUsersServer,
  OBSERVER,
  serviceLogs,
  startNatsWithUsers,
  type TestNatsUser,
} from "./nats-users.ts";
import { testServiceEnv } from "./service-env.ts";
import { TEST_AUTH_ENV } from "./tokens.ts";

export { NatsUser } from "../../schemas/nats-users.ts";
export { tokenFor } from "./tokens.ts";

const run = promisify(execFile);
export const REPO_ROOT = resolve(import.meta.dirname, "../..");
const CLI = join(REPO_ROOT, "services/cli/bin.ts");

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * A whole Loom as `npm start` runs it: its own nats-server with the users of
 * infra/nats/nats-server.conf, every service as a process under its own user, and the CLI, which
 * picks its user (submitter, or policy-admin for operators' commands) as it does in dev mode.
 */
export interface Loom extends AsyncDisposable {
  nats: NatsServer;
  users: NatsUsersServer;
  stack: Stack;
  /**
   * A read-only connection that sees every subject, stream and bucket, for tests that inspect
   * internals. It can act on nothing: a test that publishes does it as a real user (`connectAs`).
   */
  observer: NatsConnection;
  /** A connection as one user, closed with the stack. */
  connectAs(user: TestNatsUser, options?: NodeConnectionOptions): Promise<NatsConnection>;
  logDir: string;
  /** Runs `loom <args>` against this stack, as a user would. */
  cli(args: string[], options?: { token?: string; timeoutMs?: number }): Promise<CliResult>;
}

export interface LoomOptions {
  /** Environment for every service, for example another LOOM_MCP_SERVERS. */
  env?: Record<string, string>;
  /** Tools that must be registered before the stack counts as ready. */
  tools?: string[];
  /** nats-server fsyncs every write before acknowledging it (as `loom dev --nats-sync`). */
  natsSync?: boolean;
  /** How long the stack may take to become ready (30 s unless told; more on a loaded machine). */
  readyTimeoutMs?: number;
}

export async function startLoom(options: LoomOptions = {}): Promise<Loom> {
  const users = await startNatsWithUsers({ syncAlways: options.natsSync === true });
  const logDir = await mkdtemp(join(tmpdir(), "loom-logs-"));
  const stack = await startStack({
    natsUrl: (service) => users.urlAs(service),
    logDir,
    env: { LOG_LEVEL: "debug", LOOM_A2A_PORT: "0", ...testServiceEnv(), ...TEST_AUTH_ENV, ...options.env },
  });
  const connections: NatsConnection[] = [];
  const connectAs = async (user: TestNatsUser, connectOptions?: NodeConnectionOptions) => {
    const nc = await users.connectAs(user, connectOptions);
    connections.push(nc);
    return nc;
  };
  const stop = async () => {
    await stack.stop();
    await Promise.all(connections.map((nc) => nc.close()));
    await users[Symbol.asyncDispose]();
  };
  let observer: NatsConnection;
  try {
    observer = await connectAs(OBSERVER);
    // Readiness asks policy and the agents directly, which only a service's user may.
    await waitUntilReady(await connectAs(NatsUser.ORCHESTRATOR), {
      tools: options.tools ?? ["time.get_time", "crm.get_contact"],
      timeoutMs: options.readyTimeoutMs ?? 30_000,
      stack,
    });
  } catch (error) {
    await stop();
    throw new Error(`${error instanceof Error ? error.message : String(error)} (service logs in ${logDir})`);
  }
  return {
    nats: users.server,
    users,
    stack,
    observer,
    connectAs,
    logDir,
    async cli(args, cliOptions = {}) {
      const tokenArgs = cliOptions.token === undefined ? [] : ["--token", cliOptions.token];
      try {
        const { stdout, stderr } = await run(
          process.execPath,
          [CLI, "--nats", users.server.url, ...tokenArgs, ...args],
          {
            cwd: REPO_ROOT,
            timeout: cliOptions.timeoutMs ?? 30_000,
            env: { ...process.env, LOOM_TOKEN: "", LOOM_DATA_DIR: users.dataDir },
          },
        );
        return { code: 0, stdout, stderr };
      } catch (error) {
        const failed = error as { code?: number; stdout?: string; stderr?: string };
        return {
          code: typeof failed.code === "number" ? failed.code : -1,
          stdout: failed.stdout ?? "",
          stderr: failed.stderr ?? "",
        };
      }
    },
    async [Symbol.asyncDispose]() {
      await stop();
      // Every NATS user has exactly the subjects its service uses: a refused one is a path the
      // permissions in infra/nats/ forgot, whichever test took it.
      const refused = (await serviceLogs(logDir))
        .split("\n")
        .find((line) => /Permissions Violation/i.test(line));
      if (refused === undefined) await rm(logDir, { recursive: true, force: true });
      else throw new Error(`a service was refused a subject by nats-server (logs in ${logDir}): ${refused}`);
    },
  };
}
