import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { mkdir, readFile } from "node:fs/promises";
import { createServer } from "node:net";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";

export interface NatsServerProcess {
  url: string;
  port: number;
  storeDir: string;
  process: ChildProcess;
  /** SIGTERM, then SIGKILL if it has not exited within 5 s. */
  stop(): Promise<void>;
}

/** A free TCP port on 127.0.0.1, chosen by the kernel. */
export async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const address = server.address();
  server.close();
  if (address === null || typeof address === "string") throw new Error("could not pick a free port");
  return address.port;
}

/**
 * Starts `nats-server` with JetStream on 127.0.0.1 and waits until it accepts connections.
 * `port` defaults to a free one; `storeDir` holds JetStream data across restarts.
 */
export async function startNatsServer(options: {
  storeDir: string;
  port?: number;
  binary?: string;
}): Promise<NatsServerProcess> {
  const port = options.port ?? (await freePort());
  await mkdir(options.storeDir, { recursive: true });
  const child = spawn(
    options.binary ?? "nats-server",
    [
      "-a",
      "127.0.0.1",
      "-p",
      String(port),
      "-js",
      "-sd",
      options.storeDir,
      "--ports_file_dir",
      options.storeDir,
    ],
    { stdio: ["ignore", "ignore", "pipe"] },
  );
  let stderr = "";
  child.stderr?.on("data", (chunk: Buffer) => {
    stderr = (stderr + chunk.toString("utf8")).slice(-4_000);
  });
  const spawnError = once(child, "error").then(([error]) => error as Error);
  const portsFile = join(options.storeDir, `nats-server_${child.pid}.ports`);
  const deadline = Date.now() + 10_000;
  for (;;) {
    const failed = await Promise.race([spawnError, sleep(50).then(() => undefined)]);
    if (failed !== undefined) throw failed;
    if (child.exitCode !== null)
      throw new Error(`nats-server exited with code ${child.exitCode}: ${stderr.trim()}`);
    if (
      await readFile(portsFile, "utf8").then(
        () => true,
        () => false,
      )
    )
      break;
    if (Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error(`nats-server did not start within 10 s: ${stderr.trim()}`);
    }
  }
  return {
    url: `nats://127.0.0.1:${port}`,
    port,
    storeDir: options.storeDir,
    process: child,
    stop: () => stopProcess(child),
  };
}

/** Ends a child process: SIGTERM, then SIGKILL after `graceMs`. Resolves once it has exited. */
export async function stopProcess(child: ChildProcess, graceMs = 5_000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, "exit");
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), graceMs);
  await exited;
  clearTimeout(timer);
}
