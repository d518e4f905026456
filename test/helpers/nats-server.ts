import type { ChildProcess } from "node:child_process";
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect, type NatsConnection, type NodeConnectionOptions } from "@nats-io/transport-node";
import {
  hasExited,
  type LaunchedNatsServer,
  launchNatsServer,
  stopProcess,
} from "../../services/cli/nats-server.ts";

/** A `nats-server` child process with JetStream, listening on 127.0.0.1 on a port of its choosing. */
export interface NatsServer extends AsyncDisposable {
  /** `nats://127.0.0.1:<port>`; stays the same across restarts. */
  readonly url: string;
  readonly port: number;
  /** JetStream store; kept across restarts so streams and KV survive them. */
  readonly storeDir: string;
  /** The running process's id, for tests that inspect or signal it; undefined once it is stopped. */
  readonly pid: number | undefined;
  /** SIGTERM (graceful shutdown) and wait for the process to exit. */
  stop(): Promise<void>;
  /** SIGKILL, as a crash would, and wait for the process to exit. */
  kill(): Promise<void>;
  /** Starts the server again on the same port and store, once it accepts connections. */
  restart(): Promise<void>;
}

export interface NatsServerOptions {
  /** Extra command-line arguments, for example `["-c", confFile]`. */
  args?: string[];
  /** Environment for the server beside this process's: the `$VARIABLES` its config reads (passwords). */
  env?: Record<string, string>;
  /** How long to wait for the server to accept connections. */
  startTimeoutMs?: number;
}

/**
 * Every server still running in this process, killed if the process ends without disposing of it.
 * Vitest ends its workers with SIGTERM, which skips "exit" handlers, so signals are caught too and
 * re-raised once the children are gone. One registry per process, however often this module loads.
 */
const REGISTRY = Symbol.for("loom.test.nats-servers");
const registryHolder = globalThis as { [REGISTRY]?: Set<ChildProcess> };
registryHolder[REGISTRY] ??= createRegistry();
const running = registryHolder[REGISTRY];

function createRegistry(): Set<ChildProcess> {
  const children = new Set<ChildProcess>();
  const killAll = () => {
    for (const child of children) child.kill("SIGKILL");
  };
  process.once("exit", killAll);
  for (const signal of ["SIGTERM", "SIGINT", "SIGHUP"] as const) {
    process.once(signal, () => {
      killAll();
      process.kill(process.pid, signal);
    });
  }
  return children;
}

/** Kills `child` (a server a test started) if this process ends before the test stops it. */
export function killOnExit(child: ChildProcess): void {
  running.add(child);
  child.once("exit", () => running.delete(child));
}

/**
 * Starts `nats-server -js` on a free port (`-p -1`) and learns the port from its ports file.
 * Use it with `await using` so the process is stopped and its temp dirs removed even when a test fails.
 */
export async function startNatsServer(options: NatsServerOptions = {}): Promise<NatsServer> {
  const baseDir = await mkdtemp(join(tmpdir(), "loom-nats-"));
  const storeDir = join(baseDir, "jetstream");
  const portsDir = join(baseDir, "ports");
  const launch = (port: number) =>
    launchNatsServer({
      storeDir,
      portsDir,
      port,
      ...(options.args === undefined ? {} : { args: options.args }),
      ...(options.env === undefined ? {} : { env: options.env }),
      ...(options.startTimeoutMs === undefined ? {} : { startTimeoutMs: options.startTimeoutMs }),
      onSpawn: killOnExit,
    });

  let current: LaunchedNatsServer;
  try {
    await mkdir(portsDir);
    current = await launch(-1);
  } catch (error) {
    await rm(baseDir, { recursive: true, force: true });
    throw error;
  }
  const { url, port } = current;

  return {
    url,
    port,
    storeDir,
    get pid() {
      return hasExited(current.child) ? undefined : current.child.pid;
    },
    stop: () => stopProcess(current.child, "SIGTERM"),
    kill: () => stopProcess(current.child, "SIGKILL"),
    async restart() {
      await stopProcess(current.child, "SIGTERM");
      current = await launch(port);
    },
    async [Symbol.asyncDispose]() {
      try {
        await stopProcess(current.child, "SIGTERM");
      } finally {
        await rm(baseDir, { recursive: true, force: true });
      }
    },
  };
}

/** A NATS connection for tests: gives up quickly when the server is gone, disposable with `await using`. */
export function connectTo(url: string, options: NodeConnectionOptions = {}): Promise<NatsConnection> {
  return connect({ servers: url, reconnectTimeWait: 100, ...options });
}
