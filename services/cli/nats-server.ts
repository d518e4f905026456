import { type ChildProcess, execFile, spawn } from "node:child_process";
import { once } from "node:events";
import { mkdir, readFile } from "node:fs/promises";
import { connect as tcpConnect } from "node:net";
import { homedir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { promisify } from "node:util";

const BINARY = "nats-server";
/** The oldest server Loom tests against and recommends (what compose deploys); older ones lose data differently. */
export const MIN_NATS_SERVER_VERSION = [2, 11] as const;
/** Where `go` lives when the machine's PATH does not include it (the official tarball's place). */
const GO_FALLBACK = "/usr/local/go/bin/go";
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
  const { path: binary } = await findNatsServer();
  const child = spawn(binary, args, {
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
        throw describe(`could not be started: ${failure.message}; is ${binary} installed?`, failure);
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

/** The nats-server binary Loom starts, and the version it reports. */
export interface NatsServerBinary {
  /** A command name found on PATH or an absolute path. */
  path: string;
  /** As the binary reports it, for example `2.15.3`. */
  version: string;
}

let found: Promise<NatsServerBinary> | undefined;

/**
 * The nats-server to start: the one on PATH when it is at least 2.11, else a current one installed
 * with `go install github.com/nats-io/nats-server/v2@…` (in `go env GOBIN`, `$(go env GOPATH)/bin` or
 * `~/go/bin`), else whatever PATH has. Looked up once per process. When none is installed at all,
 * the `nats-server` name is returned and starting it fails with ENOENT, which callers explain.
 */
export function findNatsServer(): Promise<NatsServerBinary> {
  found ??= lookUpNatsServer();
  return found;
}

async function lookUpNatsServer(): Promise<NatsServerBinary> {
  const onPath = await reportedVersion(BINARY);
  if (onPath !== undefined && isCurrent(onPath)) return { path: BINARY, version: onPath };
  for (const dir of await goBinDirs()) {
    const path = join(dir, BINARY);
    const version = await reportedVersion(path);
    if (version !== undefined && isCurrent(version)) return { path, version };
  }
  return { path: BINARY, version: onPath ?? "not installed" };
}

/** `nats-server: v2.15.3` → `2.15.3`; undefined when the binary is missing or says something else. */
async function reportedVersion(binary: string): Promise<string | undefined> {
  try {
    const { stdout } = await promisify(execFile)(binary, ["--version"], { timeout: 5_000 });
    return /v(\d+\.\d+\.\d+\S*)/.exec(stdout)?.[1];
  } catch {
    return undefined;
  }
}

function isCurrent(version: string): boolean {
  const [major = 0, minor = 0] = version.split(".").map(Number);
  const [wantMajor, wantMinor] = MIN_NATS_SERVER_VERSION;
  return major > wantMajor || (major === wantMajor && minor >= wantMinor);
}

/** Where `go install` puts binaries, as `go env` reports it (it reads GOBIN and GOPATH itself). */
async function goBinDirs(): Promise<string[]> {
  const dirs = new Set<string>();
  for (const go of ["go", GO_FALLBACK]) {
    try {
      const { stdout } = await promisify(execFile)(go, ["env", "GOBIN", "GOPATH"], { timeout: 10_000 });
      const [gobin = "", gopath = ""] = stdout.split("\n").map((line) => line.trim());
      if (gobin !== "") dirs.add(gobin);
      for (const root of gopath.split(":").filter((entry) => entry !== "")) dirs.add(join(root, "bin"));
      break;
    } catch {
      // This `go` is not installed; try the next place.
    }
  }
  dirs.add(join(homedir(), "go", "bin"));
  return [...dirs];
}
