import { execFile } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import type { NatsConnection } from "@nats-io/transport-node";
import { type Stack, startStack, waitUntilReady } from "../../services/cli/stack.ts";
import { connectTo, type NatsServer, startNatsServer } from "./nats-server.ts";
import { TEST_AUTH_ENV } from "./tokens.ts";

export { tokenFor } from "./tokens.ts";

const run = promisify(execFile);
export const REPO_ROOT = resolve(import.meta.dirname, "../..");
const CLI = join(REPO_ROOT, "services/cli/bin.ts");

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** A whole Loom: its own nats-server, every service as a process, and a way to run the CLI. */
export interface Loom extends AsyncDisposable {
  nats: NatsServer;
  stack: Stack;
  nc: NatsConnection;
  logDir: string;
  /** Runs `loom <args>` against this stack, as a user would. */
  cli(args: string[], options?: { token?: string; timeoutMs?: number }): Promise<CliResult>;
}

export interface LoomOptions {
  /** Environment for every service, for example another LOOM_MCP_SERVERS. */
  env?: Record<string, string>;
  /** Tools that must be registered before the stack counts as ready. */
  tools?: string[];
  /** How long the stack may take to become ready (30 s unless told; more on a loaded machine). */
  readyTimeoutMs?: number;
}

export async function startLoom(options: LoomOptions = {}): Promise<Loom> {
  const nats = await startNatsServer();
  const logDir = await mkdtemp(join(tmpdir(), "loom-logs-"));
  const stack = await startStack({
    natsUrl: nats.url,
    logDir,
    env: { LOG_LEVEL: "debug", LOOM_A2A_PORT: "0", ...TEST_AUTH_ENV, ...options.env },
  });
  const nc = await connectTo(nats.url);
  try {
    await waitUntilReady(nc, {
      tools: options.tools ?? ["time.get_time", "crm.get_contact"],
      timeoutMs: options.readyTimeoutMs ?? 30_000,
      stack,
    });
  } catch (error) {
    await stack.stop();
    await nc.close();
    await nats[Symbol.asyncDispose]();
    throw new Error(`${error instanceof Error ? error.message : String(error)} (service logs in ${logDir})`);
  }
  return {
    nats,
    stack,
    nc,
    logDir,
    async cli(args, cliOptions = {}) {
      const tokenArgs = cliOptions.token === undefined ? [] : ["--token", cliOptions.token];
      try {
        const { stdout, stderr } = await run(
          process.execPath,
          [CLI, "--nats", nats.url, ...tokenArgs, ...args],
          {
            cwd: REPO_ROOT,
            timeout: cliOptions.timeoutMs ?? 30_000,
            env: { ...process.env, LOOM_TOKEN: "" },
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
      await stack.stop();
      await nc.close();
      await nats[Symbol.asyncDispose]();
      await rm(logDir, { recursive: true, force: true });
    },
  };
}
