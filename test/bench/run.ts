/**
 * `npm run bench`: Loom's end-to-end latency and throughput for workflows, and for a tool call
 * through the MCP gateway, side by side with what they are built from, measured in the same run on
 * the same machine: a raw NATS request/reply round trip and a direct MCP SDK `callTool` to the
 * same server.
 */
import { randomUUID } from "node:crypto";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
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

const REPO_ROOT = resolve(import.meta.dirname, "../..");
const SEQUENTIAL_RUNS = Number(process.env.BENCH_SEQUENTIAL_RUNS ?? 100);
const CONCURRENT_RUNS = Number(process.env.BENCH_CONCURRENT_RUNS ?? 640);
const WAITING_RUNS = Number(process.env.BENCH_WAITING_RUNS ?? 10_000);
const BASELINE_CALLS = 1_000;

const call = (id: string) => ({ id, call: "time.get_time", with: { timezone: "UTC" } });
/** The workloads, each with the number of tool calls one run makes. */
const WORKLOADS = [
  { name: "1 step", steps: 1, workflow: { id: "bench-one", steps: [call("a")] } },
  {
    name: "3 steps in a row",
    steps: 3,
    workflow: { id: "bench-three", steps: [call("a"), call("b"), call("c")] },
  },
  {
    name: "fan-out of 8",
    steps: 8,
    workflow: {
      id: "bench-fan-out",
      steps: [{ id: "all", parallel: Array.from({ length: 8 }, (_, n) => call(`b${n}`)) }],
    },
  },
];
const IN_FLIGHT = [1, 32, 64];
const WAITING_WORKFLOW = {
  id: "bench-waiting",
  steps: [{ id: "approve", approval: { prompt: "Approve?", roles: ["manager"] } }],
};

interface Measurement {
  name: string;
  /** Tool calls per run, for the per-step overhead; absent for the baselines. */
  steps?: number;
  latenciesMs: number[];
  elapsedMs: number;
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN;
}

async function timed(
  count: number,
  inFlight: number,
  once: () => Promise<void>,
): Promise<Omit<Measurement, "name">> {
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

/** A nats-server (with `natsArgs`) and the whole stack on it, and a way to run a workflow to its end. */
async function startBenchStack(dir: string, natsArgs: string[] = []) {
  const nats = await launchNatsServer({ storeDir: join(dir, "nats"), args: natsArgs });
  const edgePort = await freePort();
  const stack = await startStack({
    natsUrl: nats.url,
    logDir: join(dir, "logs"),
    env: { LOG_LEVEL: "warn", LOOM_A2A_PORT: String(edgePort), ...TEST_AUTH_ENV },
  });
  const nc = await connect({ servers: nats.url });
  await waitUntilReady(nc, { tools: ["time.get_time"], timeoutMs: 60_000, stack });
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
  const runOnce = async (workflow: unknown) => {
    const runId = randomUUID();
    const ended = new Promise<{ state: TaskState; text: string }>((resolveEnd) =>
      waiting.set(runId, resolveEnd),
    );
    const h = headers();
    h.set(Headers.AUTHORIZATION, `Bearer ${token}`);
    await js.publish(Subjects.RUNS_SUBMIT, JSON.stringify({ runId, workflow, input: {} }), {
      msgID: runId,
      headers: h,
    });
    const { state, text } = await ended;
    waiting.delete(runId);
    if (state !== TaskState.COMPLETED) throw new Error(`bench run ${runId} ended ${state}: ${text}`);
  };
  return {
    stack,
    nc,
    js,
    token,
    edgePort,

    inputRequired,
    runOnce,
    async close() {
      events.unsubscribe();
      await nc.close();
      await stack.stop();
      await stopProcess(nats.child);
    },
  };
}

const dir = await mkdtemp(join(tmpdir(), "loom-bench-"));
const bench = await startBenchStack(join(dir, "default"));
const { stack, nc, js, token, edgePort, inputRequired, runOnce } = bench;
const results: Measurement[] = [];
let waitingReport: { runs: number; seconds: number; idleMb: number; waitingMb: number } | undefined;
try {
  await timed(20, 4, () => runOnce(WORKLOADS[0]?.workflow)); // warm-up: JIT, MCP server start, caches
  for (const workload of WORKLOADS) {
    for (const inFlight of IN_FLIGHT) {
      const count = inFlight === 1 ? SEQUENTIAL_RUNS : CONCURRENT_RUNS;
      const measured = await timed(count, inFlight, () => runOnce(workload.workflow));
      results.push({
        name: `loom ${workload.name}, ${inFlight} in flight`,
        steps: workload.steps,
        ...measured,
      });
    }
  }

  // The same tool through the MCP gateway: policy decision, grant, worker task, audit per call.
  const gateway = new Client({ name: "bench", version: "1" });
  await gateway.connect(
    new StreamableHTTPClientTransport(new URL(`http://127.0.0.1:${edgePort}/mcp`), {
      requestInit: { headers: { Authorization: `Bearer ${token}` } },
    }),
  );
  const gatewayCall = async () => {
    const result = await gateway.callTool({ name: "time.get_time", arguments: { timezone: "UTC" } });
    if (result.isError === true) throw new Error(`gateway call failed: ${JSON.stringify(result.content)}`);
  };
  await timed(20, 4, gatewayCall);
  for (const inFlight of [1, 32]) {
    const count = inFlight === 1 ? SEQUENTIAL_RUNS : CONCURRENT_RUNS;
    results.push({
      name: `MCP gateway tools/call, ${inFlight} in flight`,
      ...(await timed(count, inFlight, gatewayCall)),
    });
  }
  await gateway.close();

  const echo = nc.subscribe("bench.echo", {
    callback: (_error, message) => {
      message.respond(message.data);
    },
  });
  await timed(100, 1, async () => void (await nc.request("bench.echo", "ping")));
  results.push({
    name: "NATS request/reply",
    ...(await timed(BASELINE_CALLS, 1, async () => void (await nc.request("bench.echo", "ping")))),
  });
  echo.unsubscribe();

  const mcp = new Client({ name: "bench", version: "1" });
  await mcp.connect(
    new StdioClientTransport({
      command: process.execPath,
      args: [join(REPO_ROOT, "services/mcp-servers/time.ts")],
    }),
  );
  const call = async () => void (await mcp.callTool({ name: "get_time", arguments: { timezone: "UTC" } }));
  await timed(100, 1, call);
  results.push({ name: "MCP SDK callTool (stdio)", ...(await timed(BASELINE_CALLS, 1, call)) });
  await mcp.close();

  // Memory: the orchestrator's resident set with many runs parked in input-required.
  const orchestrator = stack.services.find((service) => service.name === "orchestrator")?.process.pid;
  const rssMb = async () => {
    const status = await readFile(`/proc/${orchestrator}/status`, "utf8");
    return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? Number.NaN) / 1024;
  };
  const idleRss = await rssMb();
  const started = performance.now();
  for (let sent = 0; sent < WAITING_RUNS; sent += 500) {
    await Promise.all(
      Array.from({ length: Math.min(500, WAITING_RUNS - sent) }, () => {
        const runId = randomUUID();
        const h = headers();
        h.set(Headers.AUTHORIZATION, `Bearer ${token}`);
        const body = JSON.stringify({ runId, workflow: WAITING_WORKFLOW, input: {} });
        return js.publish(Subjects.RUNS_SUBMIT, body, { msgID: runId, headers: h, timeout: 60_000 });
      }),
    );
  }
  while (inputRequired.size < WAITING_RUNS && performance.now() - started < 600_000) await sleep(250);
  await sleep(2_000);
  waitingReport = {
    runs: inputRequired.size,
    seconds: (performance.now() - started) / 1000,
    idleMb: idleRss,
    waitingMb: await rssMb(),
  };
} finally {
  await bench.close();
}

// The same 3 steps on a nats-server that fsyncs every write before its PubAck (what a single node
// needs to keep acknowledged writes through a crash): the cost of `sync_interval: always`. The
// bench's stack runs without NATS users, so it takes the setting of infra/nats/sync-always.conf
// without the users that file includes.
const syncConf = join(dir, "sync-always.conf");
await writeFile(syncConf, "jetstream {\n  sync_interval: always\n}\n");
const synced = await startBenchStack(join(dir, "sync"), ["-c", syncConf]);
try {
  const threeSteps = WORKLOADS[1];
  if (threeSteps === undefined) throw new Error("no 3-step workload");
  await timed(20, 4, () => synced.runOnce(threeSteps.workflow));
  for (const inFlight of [1, 64]) {
    const count = inFlight === 1 ? SEQUENTIAL_RUNS : CONCURRENT_RUNS;
    results.push({
      name: `loom ${threeSteps.name}, sync_interval always, ${inFlight} in flight`,
      steps: threeSteps.steps,
      ...(await timed(count, inFlight, () => synced.runOnce(threeSteps.workflow))),
    });
  }
} finally {
  await synced.close();
  await rm(dir, { recursive: true, force: true });
}

const median = (name: string) => {
  const found = results.find((result) => result.name.startsWith(name));
  return found === undefined ? Number.NaN : percentile(found.latenciesMs, 50);
};
const callTool = median("MCP SDK");
const natsRtt = median("NATS request/reply");
const rows = results.map((result) => {
  const p50 = percentile(result.latenciesMs, 50);
  const sequential = result.steps !== undefined && result.name.endsWith(" 1 in flight");
  // What Loom adds per tool call on top of the call itself, in NATS round trips.
  const overhead =
    sequential && result.steps !== undefined ? (p50 / result.steps - callTool) / natsRtt : undefined;
  return [
    result.name,
    String(result.latenciesMs.length),
    p50.toFixed(2),
    percentile(result.latenciesMs, 99).toFixed(2),
    ((result.latenciesMs.length / result.elapsedMs) * 1000).toFixed(0),
    `${(p50 / callTool).toFixed(1)}x`,
    overhead === undefined ? "" : `${overhead.toFixed(0)}x`,
  ];
});
const header = [
  "measurement",
  "n",
  "p50 ms",
  "p99 ms",
  "per s",
  "p50 vs callTool",
  "per-step overhead vs NATS RTT",
];
const widths = header.map((title, column) =>
  Math.max(title.length, ...rows.map((row) => row[column]?.length ?? 0)),
);
for (const row of [header, ...rows])
  console.log(
    row
      .map((cell, column) => cell.padEnd(widths[column] ?? 0))
      .join("  ")
      .trimEnd(),
  );
const syncCost =
  (median("loom 3 steps in a row, sync_interval always, 1 in flight") -
    median("loom 3 steps in a row, 1 in flight")) /
  3;
console.log(
  `\nsync_interval: always costs ${syncCost.toFixed(2)} ms per step (3 steps in a row, 1 in flight, p50)`,
);
if (waitingReport !== undefined) {
  const { runs, seconds, idleMb, waitingMb } = waitingReport;
  console.log(
    `\norchestrator memory: ${idleMb.toFixed(0)} MB RSS after the runs above, ${waitingMb.toFixed(0)} MB with ${runs} runs ` +
      `waiting in input-required (${(((waitingMb - idleMb) * 1024) / Math.max(1, runs)).toFixed(1)} KB per waiting run; ` +
      `${runs} parked in ${seconds.toFixed(0)} s)`,
  );
}
