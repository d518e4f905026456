/**
 * `npm run bench`: Loom's end-to-end latency and throughput for a 1-step workflow, side by side
 * with what it is built from, measured in the same run on the same machine: a raw NATS
 * request/reply round trip and a direct MCP SDK `callTool` to the same server.
 */
import { randomUUID } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { performance } from "node:perf_hooks";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { jetstream } from "@nats-io/jetstream";
import { connect, headers } from "@nats-io/transport-node";
import { TaskState, TERMINAL_STATES } from "../../schemas/a2a.ts";
import { RunEventSchema } from "../../schemas/run.ts";
import { Headers, Subjects } from "../../schemas/subjects.ts";
import { launchNatsServer, stopProcess } from "../../services/cli/nats-server.ts";
import { startStack, waitUntilReady } from "../../services/cli/stack.ts";
import { parsePayload } from "../../services/kit/index.ts";
import { TEST_AUTH_ENV, tokenFor } from "../helpers/tokens.ts";

const REPO_ROOT = resolve(import.meta.dirname, "../..");
const SEQUENTIAL_RUNS = Number(process.env.BENCH_SEQUENTIAL_RUNS ?? 200);
const CONCURRENT_RUNS = Number(process.env.BENCH_CONCURRENT_RUNS ?? 640);
const IN_FLIGHT = 32;
const BASELINE_CALLS = 1_000;

const WORKFLOW = {
  id: "bench-one",
  steps: [{ id: "now", call: "time.get_time", with: { timezone: "UTC" } }],
};

interface Measurement {
  name: string;
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

const dir = await mkdtemp(join(tmpdir(), "loom-bench-"));
const nats = await launchNatsServer({ storeDir: join(dir, "nats") });
const stack = await startStack({
  natsUrl: nats.url,
  logDir: join(dir, "logs"),
  env: { LOG_LEVEL: "warn", ...TEST_AUTH_ENV },
});
const nc = await connect({ servers: nats.url });
const results: Measurement[] = [];
try {
  await waitUntilReady(nc, { tools: ["time.get_time"], timeoutMs: 60_000, stack });
  const js = jetstream(nc);
  const token = tokenFor("bench", "analyst");

  // One subscription resolves every run's end, so the watcher costs the same at any concurrency.
  const waiting = new Map<string, (state: TaskState) => void>();
  const events = nc.subscribe(Subjects.RUN_EVENTS_ALL);
  void (async () => {
    for await (const message of events) {
      const event = parsePayload(RunEventSchema, message.data, "run event");
      if (!("statusUpdate" in event)) continue;
      const { taskId, status } = event.statusUpdate;
      if (TERMINAL_STATES.has(status.state)) waiting.get(taskId)?.(status.state);
    }
  })();
  const runOnce = async () => {
    const runId = randomUUID();
    const ended = new Promise<TaskState>((resolveEnd) => waiting.set(runId, resolveEnd));
    const h = headers();
    h.set(Headers.AUTHORIZATION, `Bearer ${token}`);
    await js.publish(Subjects.RUNS_SUBMIT, JSON.stringify({ runId, workflow: WORKFLOW, input: {} }), {
      msgID: runId,
      headers: h,
    });
    const state = await ended;
    waiting.delete(runId);
    if (state !== TaskState.COMPLETED) throw new Error(`bench run ${runId} ended ${state}`);
  };

  await timed(20, 4, runOnce); // warm-up: JIT, MCP server start, KV and stream caches
  results.push({ name: "loom run, sequential", ...(await timed(SEQUENTIAL_RUNS, 1, runOnce)) });
  results.push({
    name: `loom run, ${IN_FLIGHT} in flight`,
    ...(await timed(CONCURRENT_RUNS, IN_FLIGHT, runOnce)),
  });

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
  events.unsubscribe();
} finally {
  await nc.close();
  await stack.stop();
  await stopProcess(nats.child);
  await rm(dir, { recursive: true, force: true });
}

const baseline = results.find((result) => result.name.startsWith("MCP SDK"));
const rows = results.map((result) => {
  const p50 = percentile(result.latenciesMs, 50);
  return [
    result.name,
    String(result.latenciesMs.length),
    p50.toFixed(2),
    percentile(result.latenciesMs, 99).toFixed(2),
    ((result.latenciesMs.length / result.elapsedMs) * 1000).toFixed(0),
    baseline === undefined ? "" : `${(p50 / percentile(baseline.latenciesMs, 50)).toFixed(1)}x`,
  ];
});
const header = ["measurement", "n", "p50 ms", "p99 ms", "per s", "p50 vs callTool"];
const widths = header.map((title, column) =>
  Math.max(title.length, ...rows.map((row) => row[column]?.length ?? 0)),
);
for (const row of [header, ...rows])
  console.log(row.map((cell, column) => cell.padEnd(widths[column] ?? 0)).join("  "));
