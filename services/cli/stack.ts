import { type ChildProcess, spawn } from "node:child_process";
import { createWriteStream } from "node:fs";
import { mkdir } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { jetstreamManager } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/transport-node";
import {
  agentCancelSubject,
  agentTasksSubject,
  Buckets,
  Consumers,
  LLM_AGENT,
  MCP_WORKER_AGENT,
  Streams,
  Subjects,
} from "../../schemas/subjects.ts";
import { encodeJson } from "../kit/index.ts";
import { stopProcess } from "./nats-server.ts";

const REPO_ROOT = resolve(import.meta.dirname, "../..");
/**
 * Where services keep V8's compiled code and Node's type-stripped sources between starts (Node's
 * own default place): most of a start is loading modules, and a cached load takes about half the
 * CPU. `NODE_COMPILE_CACHE` in the environment chooses another; `NODE_DISABLE_COMPILE_CACHE=1` none.
 */
const COMPILE_CACHE_DIR = join(tmpdir(), "node-compile-cache");

export const ServiceName = {
  ORCHESTRATOR: "orchestrator",
  ACP_POLICY: "acp-policy",
  MCP_WORKER: "mcp-worker",
  LLM_AGENT: "llm-agent",
} as const;
export type ServiceName = (typeof ServiceName)[keyof typeof ServiceName];
export const ALL_SERVICES: readonly ServiceName[] = Object.values(ServiceName);

export interface StackOptions {
  /** One URL for every service, or each service's own (with its NATS user, see nats-users.ts). */
  natsUrl: string | ((service: ServiceName) => string);
  /** Extra environment for every service (for example LOOM_MCP_SERVERS). */
  env?: Record<string, string>;
  /** Where each service's JSON log goes (`<dir>/<service>.log`). */
  logDir: string;
  services?: readonly ServiceName[];
}

export interface ServiceProcess {
  name: ServiceName;
  process: ChildProcess;
  logFile: string;
}

export interface Stack {
  services: ServiceProcess[];
  /** A service that has exited, if any: a stack that lost one is not going to become ready. */
  exited(): ServiceProcess | undefined;
  /** Starts one service again (after a kill, say). */
  restart(name: ServiceName): Promise<ServiceProcess>;
  /** Starts one more replica of a service beside the running ones. */
  add(name: ServiceName): ServiceProcess;
  stop(): Promise<void>;
}

/** Starts Loom's services as child processes on the Node.js running this one. */
export async function startStack(options: StackOptions): Promise<Stack> {
  await mkdir(options.logDir, { recursive: true });
  const launch = (name: ServiceName): ServiceProcess => {
    const logFile = join(options.logDir, `${name}.log`);
    const log = createWriteStream(logFile, { flags: "a" });
    const child = spawn(process.execPath, [join(REPO_ROOT, "services", name, "main.ts")], {
      env: {
        NODE_COMPILE_CACHE: COMPILE_CACHE_DIR,
        ...process.env,
        NATS_URL: typeof options.natsUrl === "string" ? options.natsUrl : options.natsUrl(name),
        ...options.env,
      },
      stdio: ["ignore", "pipe", "pipe"],
    });
    child.stdout?.pipe(log, { end: false });
    child.stderr?.pipe(log, { end: false });
    child.once("exit", () => log.end());
    return { name, process: child, logFile };
  };
  const services = (options.services ?? ALL_SERVICES).map(launch);
  return {
    services,
    exited: () => services.find((service) => service.process.exitCode !== null),
    async restart(name) {
      const index = services.findIndex((service) => service.name === name);
      const existing = services[index];
      if (existing !== undefined) await stopProcess(existing.process);
      const started = launch(name);
      services.splice(index === -1 ? services.length : index, 1, started);
      return started;
    },
    add(name) {
      const started = launch(name);
      services.push(started);
      return started;
    },
    async stop() {
      await Promise.all(services.map((service) => stopProcess(service.process)));
    },
  };
}

/**
 * Waits until the stack can run a workflow: policy answers, the worker serves and has registered
 * `tools`, the llm agent serves, and an orchestrator is pulling submissions.
 */
export async function waitUntilReady(
  nc: NatsConnection,
  options: { tools: string[]; timeoutMs: number; stack?: Stack },
): Promise<void> {
  const deadline = Date.now() + options.timeoutMs;
  const jsm = await jetstreamManager(nc);
  let missing = "the orchestrator";
  while (Date.now() < deadline) {
    const exited = options.stack?.exited();
    if (exited !== undefined) {
      throw new Error(
        `${exited.name} exited with code ${exited.process.exitCode}; its log is ${exited.logFile}`,
      );
    }
    missing = await whatIsMissing(nc, jsm, options.tools);
    if (missing === "") return;
    await sleep(200);
  }
  throw new Error(`Loom did not become ready within ${options.timeoutMs} ms: still waiting for ${missing}`);
}

async function whatIsMissing(
  nc: NatsConnection,
  jsm: Awaited<ReturnType<typeof jetstreamManager>>,
  tools: string[],
): Promise<string> {
  try {
    const consumer = await jsm.consumers.info(Streams.RUNS, Consumers.ORCHESTRATOR_SUBMISSIONS);
    if (consumer.num_waiting === 0) return "the orchestrator";
  } catch (error) {
    return `the orchestrator (${describe(error)})`;
  }
  try {
    const kv = await new Kvm(nc).open(Buckets.TOOLS);
    for (const tool of tools) {
      if ((await kv.get(tool)) === null) return `the mcp-worker to register ${tool}`;
    }
  } catch (error) {
    return `the mcp-worker's tool registry (${describe(error)})`;
  }
  for (const [subject, who] of [
    [Subjects.POLICY_DECIDE, "acp-policy"],
    // Only acp-policy may send the worker tasks; its cancel subject is subscribed with them.
    [agentCancelSubject(MCP_WORKER_AGENT), "the mcp-worker"],
    [agentTasksSubject(LLM_AGENT), "the llm agent"],
  ] as const) {
    // An empty object is malformed for each: any reply, even the typed error, proves they serve.
    const unanswered = await nc.request(subject, encodeJson({}), { timeout: 1_000 }).then(
      () => undefined,
      (error: unknown) => describe(error),
    );
    if (unanswered !== undefined) return `${who} (${unanswered})`;
  }
  return "";
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
