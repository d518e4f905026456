import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { mkdir, mkdtemp, readFile, rm } from "node:fs/promises";
import { connect as tcpConnect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { connect, type NatsConnection, type NodeConnectionOptions } from "@nats-io/transport-node";

/** A `nats-server` child process with JetStream, listening on 127.0.0.1 on a port of its choosing. */
export interface NatsServer extends AsyncDisposable {
  /** `nats://127.0.0.1:<port>`; stays the same across restarts. */
  readonly url: string;
  readonly port: number;
  /** JetStream store; kept across restarts so streams and KV survive them. */
  readonly storeDir: string;
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
  /** How long to wait for the server to accept connections. */
  startTimeoutMs?: number;
}

const BINARY = "nats-server";
const DEFAULT_START_TIMEOUT_MS = 15_000;
const EXIT_TIMEOUT_MS = 10_000;
const STDERR_LIMIT = 16_384;

/** Every child still running in this worker, killed if the worker exits without disposing of it. */
const running = new Set<ChildProcess>();
process.once("exit", () => {
  for (const child of running) child.kill("SIGKILL");
});

/**
 * Starts `nats-server -js` on a free port (`-p -1`) and learns the port from its ports file.
 * Use it with `await using` so the process is stopped and its temp dirs removed even when a test fails.
 */
export async function startNatsServer(options: NatsServerOptions = {}): Promise<NatsServer> {
  const baseDir = await mkdtemp(join(tmpdir(), "loom-nats-"));
  const storeDir = join(baseDir, "jetstream");
  const portsDir = join(baseDir, "ports");
  const startTimeoutMs = options.startTimeoutMs ?? DEFAULT_START_TIMEOUT_MS;
  const launch = (port: number) =>
    launchServer(
      [
        "-a",
        "127.0.0.1",
        "-p",
        String(port),
        "-js",
        "-sd",
        storeDir,
        "--ports_file_dir",
        portsDir,
        ...(options.args ?? []),
      ],
      portsDir,
      startTimeoutMs,
    );

  let current: Launched;
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
    stop: () => stopChild(current.child, "SIGTERM"),
    kill: () => stopChild(current.child, "SIGKILL"),
    async restart() {
      await stopChild(current.child, "SIGTERM");
      current = await launch(port);
    },
    async [Symbol.asyncDispose]() {
      try {
        await stopChild(current.child, "SIGTERM");
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

interface Launched {
  child: ChildProcess;
  url: string;
  port: number;
}

async function launchServer(args: string[], portsDir: string, timeoutMs: number): Promise<Launched> {
  const child = spawn(BINARY, args, { stdio: ["ignore", "ignore", "pipe"] });
  running.add(child);
  child.once("exit", () => running.delete(child));
  let stderr = "";
  child.stderr?.setEncoding("utf8");
  child.stderr?.on("data", (chunk: string) => {
    stderr = (stderr + chunk).slice(-STDERR_LIMIT);
  });
  const spawnError = new Promise<Error>((resolve) => child.once("error", resolve));

  const describe = (problem: string) =>
    new Error(`nats-server ${problem} (args: ${args.join(" ")})\n--- stderr ---\n${stderr.trim()}`);
  const deadline = Date.now() + timeoutMs;
  try {
    for (;;) {
      const failure = await Promise.race([spawnError, sleep(50, undefined)]);
      if (failure !== undefined) {
        throw describe(`could not be started: ${failure.message}; is ${BINARY} on PATH?`);
      }
      if (hasExited(child)) {
        // stderr may still be in the pipe after the exit event; "close" means it has all been read.
        await Promise.race([once(child, "close"), sleep(500, undefined, { ref: false })]);
        throw describe(`exited early with ${child.exitCode ?? child.signalCode}`);
      }
      if (Date.now() > deadline) {
        throw describe(`did not accept connections within ${timeoutMs} ms`);
      }
      const url = await readPortsFile(portsDir, child.pid);
      if (url === undefined) continue;
      const port = Number(new URL(url).port);
      if (await acceptsConnections(port)) return { child, url, port };
    }
  } catch (error) {
    await stopChild(child, "SIGKILL");
    throw error;
  }
}

/** The client URL from `nats-server_<pid>.ports`, once the server has written it. */
async function readPortsFile(portsDir: string, pid: number | undefined): Promise<string | undefined> {
  if (pid === undefined) return undefined;
  let text: string;
  try {
    text = await readFile(join(portsDir, `${BINARY}_${pid}.ports`), "utf8");
  } catch {
    return undefined;
  }
  try {
    const ports = JSON.parse(text) as { nats?: unknown };
    const url = Array.isArray(ports.nats) ? ports.nats[0] : undefined;
    return typeof url === "string" ? url : undefined;
  } catch {
    // The file is written once the listeners are up; a half-written file is read again next poll.
    return undefined;
  }
}

/** True once the server answers a TCP connection with its `INFO` line. */
function acceptsConnections(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = tcpConnect({ host: "127.0.0.1", port });
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(1_000, () => done(false));
    socket.once("error", () => done(false));
    socket.once("data", (data) => done(data.toString("utf8").startsWith("INFO ")));
  });
}

function hasExited(child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null;
}

/** Sends `signal` and waits for the exit; a server that ignores SIGTERM is killed after a while. */
async function stopChild(child: ChildProcess, signal: NodeJS.Signals): Promise<void> {
  if (hasExited(child) || child.pid === undefined) return;
  const exited = once(child, "exit");
  child.kill(signal);
  const timer = sleep(EXIT_TIMEOUT_MS, "timeout" as const, { ref: false });
  if ((await Promise.race([exited, timer])) === "timeout") {
    child.kill("SIGKILL");
    await exited;
  }
}
