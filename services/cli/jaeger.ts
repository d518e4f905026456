import { type ChildProcess, spawn } from "node:child_process";
import { accessSync, constants } from "node:fs";
import { homedir } from "node:os";
import { delimiter, join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { hasExited, stopProcess } from "./nats-server.ts";

const BINARY = "jaeger";
const DEFAULT_START_TIMEOUT_MS = 30_000;
const STDERR_LIMIT = 16_384;

/** How to get the binary, for messages that say it is missing. */
export const JAEGER_INSTALL_HINT =
  "build it with infra/jaeger/install.sh (needs Go), or put the jaeger binary of a release " +
  "(https://github.com/jaegertracing/jaeger/releases) on PATH";

/**
 * Every listener of Jaeger v2's default all-in-one configuration (`jaeger` run without
 * `--config`): where it sits in that configuration and its default port. Overriding a port keeps
 * the rest of the configuration as it is.
 */
export const JaegerListeners = {
  otlpGrpc: { key: "receivers.otlp.protocols.grpc.endpoint", port: 4317 },
  otlpHttp: { key: "receivers.otlp.protocols.http.endpoint", port: 4318 },
  jaegerGrpc: { key: "receivers.jaeger.protocols.grpc.endpoint", port: 14250 },
  jaegerThriftHttp: { key: "receivers.jaeger.protocols.thrift_http.endpoint", port: 14268 },
  jaegerThriftBinary: { key: "receivers.jaeger.protocols.thrift_binary.endpoint", port: 6832 },
  jaegerThriftCompact: { key: "receivers.jaeger.protocols.thrift_compact.endpoint", port: 6831 },
  zipkin: { key: "receivers.zipkin.endpoint", port: 9411 },
  queryHttp: { key: "extensions.jaeger_query.http.endpoint", port: 16686 },
  queryGrpc: { key: "extensions.jaeger_query.grpc.endpoint", port: 16685 },
  samplingHttp: { key: "extensions.remote_sampling.http.endpoint", port: 5778 },
  samplingGrpc: { key: "extensions.remote_sampling.grpc.endpoint", port: 5779 },
  health: { key: "extensions.healthcheckv2.http.endpoint", port: 13133 },
  healthGrpc: { key: "extensions.healthcheckv2.grpc.endpoint", port: 13132 },
  expvar: { key: "extensions.expvar.endpoint", port: 27777 },
  zpages: { key: "extensions.zpages.endpoint", port: 27778 },
  /** Jaeger's own Prometheus metrics: one reader in a list, so it is replaced whole. */
  metrics: { key: "service.telemetry.metrics.readers", port: 8888 },
} as const;
export type JaegerListener = keyof typeof JaegerListeners;
export type JaegerPorts = Record<JaegerListener, number>;

export interface JaegerLaunch {
  /** The `jaeger` binary to run. */
  binary: string;
  /** Ports to move off their defaults, each bound to 127.0.0.1; the others keep theirs. */
  ports?: Partial<JaegerPorts>;
  startTimeoutMs?: number;
  /** Called with the child as soon as it is spawned, so callers can track it for clean-up. */
  onSpawn?: (child: ChildProcess) => void;
}

export interface LaunchedJaeger {
  child: ChildProcess;
  ports: JaegerPorts;
  /** The web UI and query API, `http://localhost:<port>`. */
  uiUrl: string;
  /** For `OTEL_EXPORTER_OTLP_ENDPOINT` (OTLP over HTTP). */
  otlpEndpoint: string;
  /** For `OTEL_EXPORTER_JAEGER_ENDPOINT` (Jaeger Thrift over HTTP). */
  thriftEndpoint: string;
}

/**
 * The `jaeger` binary: on PATH, else where `go install` puts it (`$GOBIN`, `$GOPATH/bin`,
 * `~/go/bin`); undefined when there is none.
 */
export function findJaeger(env: NodeJS.ProcessEnv): string | undefined {
  const goPath = env.GOPATH?.split(delimiter)[0] || join(env.HOME || homedir(), "go");
  const dirs = [...(env.PATH ?? "").split(delimiter), env.GOBIN, join(goPath, "bin")];
  for (const dir of dirs) {
    if (dir === undefined || dir === "") continue;
    const candidate = join(dir, BINARY);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch (error) {
      // Not in this folder, or not executable: look in the next one. Anything else is a real fault.
      const code = (error as NodeJS.ErrnoException).code;
      if (code !== "ENOENT" && code !== "EACCES" && code !== "ENOTDIR") throw error;
    }
  }
  return undefined;
}

/** `--set` arguments that move each given listener to its port on 127.0.0.1. */
function portArguments(ports: Partial<JaegerPorts>): string[] {
  const args: string[] = [];
  for (const [listener, port] of Object.entries(ports) as [JaegerListener, number][]) {
    const { key } = JaegerListeners[listener];
    const value =
      listener === "metrics"
        ? `[{pull: {exporter: {prometheus: {host: 127.0.0.1, port: ${port}}}}}]`
        : `127.0.0.1:${port}`;
    args.push("--set", `${key}=${value}`);
  }
  return args;
}

/**
 * Starts Jaeger's all-in-one (in-memory storage) and resolves once its health check says every
 * receiver and the query API are up. One that cannot start fails with its stderr in the error.
 */
export async function launchJaeger(options: JaegerLaunch): Promise<LaunchedJaeger> {
  const defaults = Object.fromEntries(
    Object.entries(JaegerListeners).map(([listener, { port }]) => [listener, port]),
  ) as JaegerPorts;
  const ports: JaegerPorts = { ...defaults, ...options.ports };
  const args = portArguments(options.ports ?? {});
  // Jaeger traces its own query API over OTLP/gRPC: to itself, not to where Loom's variables point.
  // Its last export on shutdown finds its receiver closed; a short timeout keeps stopping quick.
  const env = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith("OTEL_")));
  const child = spawn(options.binary, args, {
    stdio: ["ignore", "ignore", "pipe"],
    env: {
      ...env,
      OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${ports.otlpGrpc}`,
      OTEL_EXPORTER_OTLP_TIMEOUT: "500",
    },
  });
  options.onSpawn?.(child);
  let stderr = "";
  child.stderr?.setEncoding("utf8");
  child.stderr?.on("data", (chunk: string) => {
    stderr = (stderr + chunk).slice(-STDERR_LIMIT);
  });
  const spawnError = new Promise<NodeJS.ErrnoException>((resolve) => child.once("error", resolve));
  const closed = new Promise<void>((resolve) => child.once("close", () => resolve()));
  const describe = (problem: string, cause?: Error) =>
    Object.assign(
      new Error(`jaeger ${problem} (${options.binary} ${args.join(" ")})\n--- stderr ---\n${stderr.trim()}`),
      { cause, code: (cause as NodeJS.ErrnoException | undefined)?.code },
    );

  const timeoutMs = options.startTimeoutMs ?? DEFAULT_START_TIMEOUT_MS;
  const deadline = Date.now() + timeoutMs;
  try {
    for (;;) {
      const failure = await Promise.race([spawnError, sleep(100, undefined)]);
      if (failure !== undefined) throw describe(`could not be started: ${failure.message}`, failure);
      if (hasExited(child)) {
        await Promise.race([closed, sleep(1_000, undefined, { ref: false })]);
        throw describe(`exited early with ${child.exitCode ?? child.signalCode}`);
      }
      if (Date.now() > deadline) throw describe(`was not healthy within ${timeoutMs} ms`);
      if (await healthy(ports.health)) break;
    }
  } catch (error) {
    await stopProcess(child, "SIGKILL");
    throw error;
  }
  return {
    child,
    ports,
    uiUrl: `http://localhost:${ports.queryHttp}`,
    otlpEndpoint: `http://127.0.0.1:${ports.otlpHttp}`,
    thriftEndpoint: `http://127.0.0.1:${ports.jaegerThriftHttp}/api/traces`,
  };
}

/**
 * True once the health check extension reports every component started (200; 503 while starting).
 * A refused or unanswered request means it is not listening yet: the caller polls until its deadline.
 */
async function healthy(port: number): Promise<boolean> {
  try {
    const response = await fetch(`http://127.0.0.1:${port}/status`, { signal: AbortSignal.timeout(1_000) });
    await response.body?.cancel();
    return response.ok;
  } catch {
    return false;
  }
}
