import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { mkdir, readFile } from "node:fs/promises";
import { connect as tcpConnect } from "node:net";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";

const BINARY = "nats-server";
const DEFAULT_START_TIMEOUT_MS = 15_000;
const EXIT_TIMEOUT_MS = 10_000;
const STDERR_LIMIT = 16_384;

export interface NatsServerLaunch {
  /** JetStream store; kept across restarts so streams and KV survive them. */
  storeDir: string;
  /** Where the server writes its ports file; defaults to `storeDir`. */
  portsDir?: string;
  /** `-1` (the default) lets the server pick a free port; the ports file says which. */
  port?: number;
  /** Extra command-line arguments, for example `["-c", confFile]`. */
  args?: string[];
  /** Environment the server reads its config's `$VARIABLES` from (the users' passwords), beside this process's. */
  env?: Record<string, string>;
  startTimeoutMs?: number;
  /** Called with the child as soon as it is spawned, so callers can track it for clean-up. */
  onSpawn?: (child: ChildProcess) => void;
}

export interface LaunchedNatsServer {
  child: ChildProcess;
  /** `nats://127.0.0.1:<port>` */
  url: string;
  port: number;
}

/**
 * Starts `nats-server` with JetStream on 127.0.0.1 and resolves once it answers connections. A
 * server that cannot start fails with its arguments and stderr in the error.
 */
export async function launchNatsServer(options: NatsServerLaunch): Promise<LaunchedNatsServer> {
  const portsDir = options.portsDir ?? options.storeDir;
  await mkdir(portsDir, { recursive: true });
  const args = [
    ...["-a", "127.0.0.1", "-p", String(options.port ?? -1), "-js"],
    ...["-sd", options.storeDir, "--ports_file_dir", portsDir],
    ...(options.args ?? []),
  ];
  const child = spawn(BINARY, args, {
    stdio: ["ignore", "ignore", "pipe"],
    env: { ...process.env, ...options.env },
  });
  options.onSpawn?.(child);
  let stderr = "";
  child.stderr?.setEncoding("utf8");
  child.stderr?.on("data", (chunk: string) => {
    stderr = (stderr + chunk).slice(-STDERR_LIMIT);
  });
  const spawnError = new Promise<NodeJS.ErrnoException>((resolve) => child.once("error", resolve));
  // "close" comes once stderr has been read to the end, so the error below can quote all of it.
  const closed = new Promise<void>((resolve) => child.once("close", () => resolve()));
  const describe = (problem: string, cause?: Error) =>
    Object.assign(
      new Error(`nats-server ${problem} (args: ${args.join(" ")})\n--- stderr ---\n${stderr.trim()}`),
      {
        cause,
        code: (cause as NodeJS.ErrnoException | undefined)?.code,
      },
    );

  const timeoutMs = options.startTimeoutMs ?? DEFAULT_START_TIMEOUT_MS;
  const deadline = Date.now() + timeoutMs;
  try {
    for (;;) {
      const failure = await Promise.race([spawnError, sleep(50, undefined)]);
      if (failure !== undefined)
        throw describe(`could not be started: ${failure.message}; is ${BINARY} on PATH?`, failure);
      if (hasExited(child)) {
        await Promise.race([closed, sleep(1_000, undefined, { ref: false })]);
        throw describe(`exited early with ${child.exitCode ?? child.signalCode}`);
      }
      if (Date.now() > deadline) throw describe(`did not accept connections within ${timeoutMs} ms`);
      const url = await readPortsFile(portsDir, child.pid);
      if (url === undefined) continue;
      const port = Number(new URL(url).port);
      if (await acceptsConnections(port)) return { child, url, port };
    }
  } catch (error) {
    await stopProcess(child, "SIGKILL");
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

/** True once a NATS server answers a TCP connection on 127.0.0.1:`port` with its `INFO` line. */
export function acceptsConnections(port: number): Promise<boolean> {
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

export function hasExited(child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null;
}

/** Sends `signal` and waits for the exit; a process that ignores it is killed after a while. */
export async function stopProcess(child: ChildProcess, signal: NodeJS.Signals = "SIGTERM"): Promise<void> {
  if (hasExited(child) || child.pid === undefined) return;
  const exited = once(child, "exit");
  child.kill(signal);
  const timer = sleep(EXIT_TIMEOUT_MS, "timeout" as const, { ref: false });
  if ((await Promise.race([exited, timer])) === "timeout") {
    child.kill("SIGKILL");
    await exited;
  }
}
