/**
 * `npm run bench`: issue 12's workload (a durable 3-step workflow, each step one MCP `echo` call to
 * server-everything over stdio), the 1-step and fan-out-of-8 workloads and the MCP gateway's
 * `tools/call`, side by side with what they are built from (a raw NATS round trip, a direct
 * `callTool` to the same server), all in one run on one machine. Beside the latencies it prints,
 * per workload, what a step costs on the bus (from nats-server's monitoring endpoint and a tap on
 * `>`) and in CPU (from `/proc/<pid>/stat` of every process). See docs/benchmark.md.
 */
import { randomUUID } from "node:crypto";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { jetstream } from "@nats-io/jetstream";
import { connect, headers } from "@nats-io/transport-node";
import { TaskState, TERMINAL_STATES } from "../../schemas/a2a.ts";
import { RunEventSchema } from "../../schemas/run.ts";
import { Headers, Subjects } from "../../schemas/subjects.ts";
import { launchNatsServer, stopProcess } from "../../services/cli/nats-server.ts";
import { startStack, waitUntilReady } from "../../services/cli/stack.ts";
import { parsePayload } from "../../services/kit/index.ts";
import { freePort } from "../helpers/ports.ts";
import { TEST_AUTH_ENV, tokenFor } from "../helpers/tokens.ts";
import { tapBus } from "./bus-tap.ts";
import { counterDelta, cpuMs, descendants, NatsMonitor } from "./monitor.ts";
import { type CountRow, type Measurement, printReport } from "./report.ts";

const REPO_ROOT = resolve(import.meta.dirname, "../..");
const EVERYTHING = join(REPO_ROOT, "node_modules/@modelcontextprotocol/server-everything/dist/index.js");
/** Multiplies every run count (`BENCH_SCALE=5` for a longer, steadier run). */
const SCALE = Number(process.env.BENCH_SCALE ?? 1);
/** Sequential runs per workload while the bus is tapped and counted. */
const COUNTED_RUNS = Number(process.env.BENCH_COUNTED_RUNS ?? 30);
const WAITING_RUNS = Number(process.env.BENCH_WAITING_RUNS ?? 1_000);
const scaled = (runs: number) => Math.max(1, Math.round(runs * SCALE));
const IN_FLIGHT = 64;

const echo = (id: string) => ({ id, call: "everything.echo", with: { message: `step ${id}` } });
/** The workloads: tool calls per run, and how many runs in a row and at 64 in flight. */
const WORKLOADS = [
  {
    name: "3 steps in a row",
    steps: 3,
    sequential: scaled(200),
    concurrent: scaled(1_000),
    workflow: { id: "bench-three", steps: [echo("a"), echo("b"), echo("c")] },
  },
  {
    name: "1 step",
    steps: 1,
    sequential: scaled(100),
    concurrent: scaled(500),
    workflow: { id: "bench-one", steps: [echo("a")] },
  },
  {
    name: "fan-out of 8",
    steps: 8,
    sequential: scaled(50),
    concurrent: scaled(250),
    workflow: {
      id: "bench-fan-out",
      steps: [{ id: "all", parallel: Array.from({ length: 8 }, (_, n) => echo(`b${n}`)) }],
    },
  },
];
const WAITING_WORKFLOW = {
  id: "bench-waiting",
  steps: [{ id: "approve", approval: { prompt: "Approve?", roles: ["manager"] } }],
};
const POLICY = `version: "bench"
rules:
  - { name: bench-starts-workflows, effect: allow, roles: [analyst], actions: [workflow.start], workflows: ["*"] }
  - { name: bench-calls-everything, effect: allow, roles: [analyst], actions: [tools.call], tools: ["everything.*"] }
`;
/**
 * Tracing as a production deployment would run it: 1% of runs traced, no backend to export to.
 * The caller's own OTEL_* settings win.
 */
const TELEMETRY_ENV = {
  OTEL_TRACES_EXPORTER: process.env.OTEL_TRACES_EXPORTER ?? "none",
  OTEL_TRACES_SAMPLER: process.env.OTEL_TRACES_SAMPLER ?? "parentbased_traceidratio",
  OTEL_TRACES_SAMPLER_ARG: process.env.OTEL_TRACES_SAMPLER_ARG ?? "0.01",
};

async function timed(count: number, inFlight: number, once: () => Promise<void>) {
  const latenciesMs: number[] = [];
  let next = 0;
  const started = performance.now();
  const lane = async () => {
    while (next < count) {
      next++;
      const t0 = performance.now();
      await once();
      latenciesMs.push(performance.now() - t0);
    }
  };
  await Promise.all(Array.from({ length: inFlight }, lane));
  return { latenciesMs: latenciesMs.sort((a, b) => a - b), elapsedMs: performance.now() - started };
}

/** Writes server-everything as the one MCP server, and the bench's policy, into `dir`. */
async function writeConfig(dir: string): Promise<Record<string, string>> {
  const servers = join(dir, "servers.yaml");
  const policies = join(dir, "policies");
  await mkdir(policies, { recursive: true });
  await writeFile(
    servers,
    `servers:
  - name: everything
    transport: { type: stdio, command: node, args: ["${EVERYTHING}", stdio] }
    governance: { owner: mcp-reference, data_classification: public, access_level: read }
`,
  );
  await writeFile(join(policies, "bench.yaml"), POLICY);
  return { LOOM_MCP_SERVERS: servers, LOOM_POLICY_DIR: policies };
}

/**
 * A nats-server (with `natsArgs`, monitoring on) and the whole stack on it; runs a workflow to its
 * end, measures a workload's latencies and CPU, counts its bus traffic.
 */
async function startBenchStack(dir: string, natsArgs: string[] = []) {
  const monitorPort = await freePort();
  const nats = await launchNatsServer({
    storeDir: join(dir, "nats"),
    args: ["-m", String(monitorPort), ...natsArgs],
  });
  const monitor = new NatsMonitor(monitorPort);
  const edgePort = await freePort();
  const stack = await startStack({
    natsUrl: nats.url,
    logDir: join(dir, "logs"),
    env: {
      LOG_LEVEL: "warn",
      LOOM_A2A_PORT: String(edgePort),
      ...TEST_AUTH_ENV,
      ...TELEMETRY_ENV,
      ...(await writeConfig(dir)),
    },
  });
  const nc = await connect({ servers: nats.url, name: "bench" });
  const tap = await connect({ servers: nats.url, name: "bench-tap" });
  await waitUntilReady(nc, { tools: ["everything.echo"], timeoutMs: 60_000, stack });
  const js = jetstream(nc);
  const token = tokenFor("bench", "analyst");

  // One subscription resolves every run's end, so the watcher costs the same at any concurrency.
  const waiting = new Map<string, (end: { state: TaskState; text: string }) => void>();
  const inputRequired = new Set<string>();
  const events = nc.subscribe(Subjects.RUN_EVENTS_ALL);
  void (async () => {
    for await (const message of events) {
      const event = parsePayload(RunEventSchema, message.data, "run event");
      if (!("statusUpdate" in event)) continue;
      const { taskId, status } = event.statusUpdate;
      const text =
        status.message?.parts.flatMap((part) => ("text" in part ? [part.text] : [])).join(" ") ?? "";
      if (TERMINAL_STATES.has(status.state)) waiting.get(taskId)?.({ state: status.state, text });
      if (status.state === TaskState.INPUT_REQUIRED) inputRequired.add(taskId);
    }
  })();
  const submit = (workflow: unknown, runId: string) => {
    const h = headers();
    h.set(Headers.AUTHORIZATION, `Bearer ${token}`);
    const body = JSON.stringify({ runId, workflow, input: {} });
    return js.publish(Subjects.RUNS_SUBMIT, body, { msgID: runId, headers: h, timeout: 60_000 });
  };
  const runOnce = async (workflow: unknown) => {
    const runId = randomUUID();
    const ended = new Promise<{ state: TaskState; text: string }>((resolveEnd) =>
      waiting.set(runId, resolveEnd),
    );
    await submit(workflow, runId);
    const { state, text } = await ended;
    waiting.delete(runId);
    if (state !== TaskState.COMPLETED) throw new Error(`bench run ${runId} ended ${state}: ${text}`);
  };

  /** The processes whose CPU is measured, by the name the report gives them. */
  const processes = async (): Promise<Map<string, number[]>> => {
    const pid = (name: string) => stack.services.find((service) => service.name === name)?.process.pid;
    const worker = pid("mcp-worker");
    const found = new Map<string, number[]>();
    for (const name of ["orchestrator", "acp-policy", "mcp-worker", "llm-agent"]) {
      const one = pid(name);
      if (one !== undefined) found.set(name, [one]);
    }
    if (nats.child.pid !== undefined) found.set("nats-server", [nats.child.pid]);
    found.set("MCP server", worker === undefined ? [] : await descendants(worker));
    return found;
  };
  const cpuNow = async (pids: Map<string, number[]>) => {
    const used = new Map<string, number>();
    for (const [name, list] of pids) {
      let sum = 0;
      for (const one of list) sum += await cpuMs(one).catch(() => 0);
      used.set(name, sum);
    }
    const self = process.cpuUsage();
    used.set("bench client", (self.user + self.system) / 1000);
    return used;
  };

  /** Latencies and the CPU every process used per run, over `count` runs of `once` at `inFlight`. */
  const measure = async (
    name: string,
    count: number,
    inFlight: number,
    once: () => Promise<void>,
  ): Promise<Measurement> => {
    await monitor.settle();
    const pids = await processes();
    const before = await cpuNow(pids);
    const timing = await timed(count, inFlight, once);
    const after = await cpuNow(pids);
    const cpuPerRunMs = new Map<string, number>();
    for (const [process, ms] of after) cpuPerRunMs.set(process, (ms - (before.get(process) ?? 0)) / count);
    return { name, ...timing, cpuPerRunMs };
  };

  /** What `runs` sequential runs of `once` cost on the bus, per step (`steps` tool calls a run). */
  const count = async (name: string, steps: number, runs: number, once: () => Promise<void>) => {
    await monitor.settle();
    const tapping = await tapBus(tap);
    const before = await monitor.counters();
    for (let n = 0; n < runs; n++) await once();
    await nc.flush();
    await sleep(100);
    const after = await monitor.counters();
    const tapped = await tapping.stop();
    return { name, steps, runs, delta: counterDelta(before, after), tapped } satisfies CountRow;
  };

  return {
    stack,
    nc,
    token,
    edgePort,
    monitor,
    inputRequired,
    submit,
    runOnce,
    measure,
    count,
    async close() {
      events.unsubscribe();
      await tap.close();
      await nc.close();
      await stack.stop();
      await stopProcess(nats.child);
    },
  };
}

const dir = await mkdtemp(join(tmpdir(), "loom-bench-"));
const bench = await startBenchStack(join(dir, "default"));
const results: Measurement[] = [];
const counts: CountRow[] = [];
let syncSetting = "";
let waitingReport: { runs: number; seconds: number; idleMb: number; waitingMb: number } | undefined;
try {
  syncSetting = await bench.monitor.syncSetting();
  const warmUp = WORKLOADS[0]?.workflow;
  for (let n = 0; n < 20; n++) await bench.runOnce(warmUp); // JIT, MCP server start, caches
  for (const workload of WORKLOADS) {
    const once = () => bench.runOnce(workload.workflow);
    counts.push(await bench.count(`loom ${workload.name}`, workload.steps, COUNTED_RUNS, once));
    results.push(await bench.measure(`loom ${workload.name}, 1 in flight`, workload.sequential, 1, once));
    results.push(
      await bench.measure(
        `loom ${workload.name}, ${IN_FLIGHT} in flight`,
        workload.concurrent,
        IN_FLIGHT,
        once,
      ),
    );
  }

  // The same tool through the MCP gateway: policy decision, grant, worker task, audit per call.
  const gateway = new Client({ name: "bench", version: "1" });
  await gateway.connect(
    new StreamableHTTPClientTransport(new URL(`http://127.0.0.1:${bench.edgePort}/mcp`), {
      requestInit: { headers: { Authorization: `Bearer ${bench.token}` } },
    }),
  );
  const gatewayCall = async () => {
    const result = await gateway.callTool({ name: "everything.echo", arguments: { message: "gateway" } });
    if (result.isError === true) throw new Error(`gateway call failed: ${JSON.stringify(result.content)}`);
  };
  await timed(20, 4, gatewayCall);
  counts.push(await bench.count("MCP gateway tools/call", 1, COUNTED_RUNS, gatewayCall));
  results.push(await bench.measure("MCP gateway tools/call, 1 in flight", scaled(200), 1, gatewayCall));
  results.push(
    await bench.measure(
      `MCP gateway tools/call, ${IN_FLIGHT} in flight`,
      scaled(1_000),
      IN_FLIGHT,
      gatewayCall,
    ),
  );
  await gateway.close();

  // What Loom is built from, measured the same way.
  const echoReply = bench.nc.subscribe("bench.echo", {
    callback: (_error, message) => {
      message.respond(message.data);
    },
  });
  const natsRequest = async () => void (await bench.nc.request("bench.echo", "ping"));
  await timed(100, 1, natsRequest);
  counts.push(await bench.count("NATS request/reply", 1, COUNTED_RUNS, natsRequest));
  results.push(await bench.measure("NATS request/reply", scaled(1_000), 1, natsRequest));
  echoReply.unsubscribe();

  const mcp = new Client({ name: "bench", version: "1" });
  await mcp.connect(
    new StdioClientTransport({ command: process.execPath, args: [EVERYTHING, "stdio"], stderr: "ignore" }),
  );
  const direct = async () => void (await mcp.callTool({ name: "echo", arguments: { message: "direct" } }));
  const directThree = async () => {
    for (let n = 0; n < 3; n++) await direct();
  };
  await timed(100, 1, direct);
  counts.push(await bench.count("MCP SDK callTool (stdio)", 1, COUNTED_RUNS, direct));
  results.push(await bench.measure("MCP SDK callTool (stdio)", scaled(1_000), 1, direct));
  results.push(await bench.measure("3 direct callTool in a row, 1 in flight", scaled(200), 1, directThree));
  results.push(
    await bench.measure(
      `3 direct callTool in a row, ${IN_FLIGHT} in flight`,
      scaled(1_000),
      IN_FLIGHT,
      directThree,
    ),
  );
  await mcp.close();

  // Memory: the orchestrator's resident set with many runs parked in input-required.
  const orchestrator = bench.stack.services.find((service) => service.name === "orchestrator")?.process.pid;
  const rssMb = async () => {
    const status = await readFile(`/proc/${orchestrator}/status`, "utf8");
    return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? Number.NaN) / 1024;
  };
  const idleRss = await rssMb();
  const started = performance.now();
  for (let sent = 0; sent < WAITING_RUNS; sent += 500) {
    await Promise.all(
      Array.from({ length: Math.min(500, WAITING_RUNS - sent) }, () =>
        bench.submit(WAITING_WORKFLOW, randomUUID()),
      ),
    );
  }
  while (bench.inputRequired.size < WAITING_RUNS && performance.now() - started < 600_000) await sleep(250);
  await sleep(2_000);
  waitingReport = {
    runs: bench.inputRequired.size,
    seconds: (performance.now() - started) / 1000,
    idleMb: idleRss,
    waitingMb: await rssMb(),
  };
} finally {
  await bench.close();
}

// The same 3 steps on a nats-server that fsyncs every write before its PubAck (what a single node
// needs to keep acknowledged writes through a crash). The bench's stack runs without NATS users,
// so it takes the setting of infra/nats/sync-always.conf without the users that file includes.
const syncConf = join(dir, "sync-always.conf");
await writeFile(syncConf, "jetstream {\n  sync_interval: always\n}\n");
const synced = await startBenchStack(join(dir, "sync"), ["-c", syncConf]);
let syncedSetting = "";
try {
  syncedSetting = await synced.monitor.syncSetting();
  const threeSteps = WORKLOADS[0];
  if (threeSteps === undefined) throw new Error("no 3-step workload");
  const once = () => synced.runOnce(threeSteps.workflow);
  for (let n = 0; n < 20; n++) await once();
  const name = `loom ${threeSteps.name}, sync_interval always`;
  results.push(await synced.measure(`${name}, 1 in flight`, Math.ceil(threeSteps.sequential / 2), 1, once));
  results.push(
    await synced.measure(
      `${name}, ${IN_FLIGHT} in flight`,
      Math.ceil(threeSteps.concurrent / 2),
      IN_FLIGHT,
      once,
    ),
  );
} finally {
  await synced.close();
  await rm(dir, { recursive: true, force: true });
}

printReport({
  results,
  counts,
  settings: [
    `JetStream: ${syncSetting}; the "sync_interval always" rows: ${syncedSetting}`,
    `tracing: ${TELEMETRY_ENV.OTEL_TRACES_SAMPLER} ${TELEMETRY_ENV.OTEL_TRACES_SAMPLER_ARG}, exporter ${TELEMETRY_ENV.OTEL_TRACES_EXPORTER}`,
    `runs counted on the bus: ${COUNTED_RUNS} per workload, one at a time; BENCH_SCALE ${SCALE}`,
  ],
  waiting: waitingReport,
});
