/**
 * `npm run bench:startup`: how soon each service is ready after its process starts, the time a
 * crash-looping replica loses. The whole stack runs; each service in turn is stopped and started
 * again `BENCH_STARTS` times beside the others, and its "started" log line is awaited: the line's
 * `startup_ms` (process start to ready, module loading included), the CPU the start took
 * (`startup_cpu_ms`, which the machine's other work hardly moves) and the wall-clock time from the
 * spawn are printed per service, against the 1 s target. Twice: with the stack idle, and busy,
 * with a second replica of every service beside it and `BENCH_LOAD_IN_FLIGHT` runs kept in
 * flight through them, so runs go on flowing while a replica restarts (as they do while one
 * crash-loops).
 */
import { randomUUID } from "node:crypto";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";
import { jetstream } from "@nats-io/jetstream";
import { connect, headers, type NatsConnection } from "@nats-io/transport-node";
import { Headers, Subjects } from "../../schemas/subjects.ts";
import { launchNatsServer, stopProcess } from "../../services/cli/nats-server.ts";
import {
  ALL_SERVICES,
  type ServiceName,
  type Stack,
  startStack,
  waitUntilReady,
} from "../../services/cli/stack.ts";
import { type EndTracker, trackEnds } from "../helpers/fault-load.ts";
import { TEST_AUTH_ENV, tokenFor } from "../helpers/tokens.ts";

const STARTS = Number(process.env.BENCH_STARTS ?? 5);
const LOAD_IN_FLIGHT = Number(process.env.BENCH_LOAD_IN_FLIGHT ?? 16);
/** Issue 13: a service ready within 1 s of its process start. */
const TARGET_MS = 1_000;
const STARTED = /"startup_ms":(\d+),"startup_cpu_ms":(\d+)[^\n]*"msg":"started"/g;
const RUN_END_TIMEOUT_MS = 30_000;

interface Startup {
  ms: number;
  cpuMs: number;
}

/** The `startup_ms` and `startup_cpu_ms` of every "started" line the log holds so far. */
async function startups(logFile: string): Promise<Startup[]> {
  const text = await readFile(logFile, "utf8").catch(() => "");
  return [...text.matchAll(STARTED)].map((match) => ({ ms: Number(match[1]), cpuMs: Number(match[2]) }));
}

/** Resolves with the next "started" line `logFile` gets after `before` of them. */
async function nextStart(logFile: string, before: number, exited: () => boolean): Promise<Startup> {
  for (;;) {
    const seen = await startups(logFile);
    const last = seen[seen.length - 1];
    if (seen.length > before && last !== undefined) return last;
    if (exited()) throw new Error(`a service exited while starting; its log is ${logFile}`);
    await sleep(20);
  }
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? Number.NaN;
}

interface StartTimes {
  own: number[];
  cpu: number[];
  wall: number[];
}

/** Restarts `name` `STARTS` times: each start's own `startup_ms`, its CPU and the time from its spawn. */
async function timeStarts(stack: Stack, name: ServiceName): Promise<StartTimes> {
  const times: StartTimes = { own: [], cpu: [], wall: [] };
  for (let start = 0; start < STARTS; start++) {
    const service = stack.services.find((candidate) => candidate.name === name);
    if (service === undefined) throw new Error(`no ${name} in the stack`);
    const before = (await startups(service.logFile)).length;
    const restarted = await stack.restart(name);
    const spawned = performance.now();
    const started = await nextStart(restarted.logFile, before, () => restarted.process.exitCode !== null);
    times.wall.push(Math.round(performance.now() - spawned));
    times.own.push(started.ms);
    times.cpu.push(started.cpuMs);
  }
  return times;
}

/** Keeps `inFlight` `hello` runs going until stopped; counts the runs that completed. */
function runsInFlight(nc: NatsConnection, tracker: EndTracker, inFlight: number) {
  const js = jetstream(nc);
  const token = tokenFor("bench", "admin");
  const stopping = new AbortController();
  let ended = 0;
  const lane = async () => {
    while (!stopping.signal.aborted) {
      const runId = randomUUID();
      const h = headers();
      h.set(Headers.AUTHORIZATION, `Bearer ${token}`);
      const body = JSON.stringify({ runId, workflow: "hello", input: { contactId: "c-1" } });
      await js.publish(Subjects.RUNS_SUBMIT, body, { msgID: runId, headers: h });
      const timedOut = sleep(RUN_END_TIMEOUT_MS, "timeout", { signal: stopping.signal }).catch(
        () => "stopped",
      );
      if ((await Promise.race([tracker.endOf(runId).then(() => "ended"), timedOut])) === "ended") ended++;
    }
  };
  const lanes = Promise.all(Array.from({ length: inFlight }, lane));
  return {
    ended: () => ended,
    async stop() {
      stopping.abort();
      await lanes;
    },
  };
}

const COLUMNS = [13, 7, 20, 12, 20];
const row = (cells: string[]) => `  ${cells.map((cell, index) => cell.padEnd(COLUMNS[index] ?? 0)).join("")}`;
const spread = (values: number[]) => `${median(values)} / ${Math.max(...values)}`;

function printRow(name: string, stackState: string, times: StartTimes): void {
  const verdict = median(times.own) <= TARGET_MS ? "met" : "missed";
  console.log(
    row([name, stackState, spread(times.own), String(median(times.cpu)), spread(times.wall), verdict]),
  );
}

const loadAverage = () => loadavg()[0]?.toFixed(1) ?? "?";

const dir = await mkdtemp(join(tmpdir(), "loom-bench-startup-"));
const nats = await launchNatsServer({ storeDir: join(dir, "nats") });
const stack = await startStack({
  natsUrl: nats.url,
  logDir: join(dir, "logs"),
  env: { LOG_LEVEL: "info", LOOM_A2A_PORT: "0", ...TEST_AUTH_ENV },
});
const nc = await connect({ servers: nats.url });
const tracker = trackEnds(nc);
try {
  await waitUntilReady(nc, { tools: ["time.get_time", "crm.get_contact"], timeoutMs: 60_000, stack });
  console.log(
    `service start to ready, ${STARTS} starts each beside the running stack (ms, median / max; CPU: ` +
      `median); target ${TARGET_MS} ms, met when the median startup_ms is within it`,
  );
  console.log(row(["service", "stack", "startup_ms", "CPU ms", "from spawn", "target"]));
  const idleSince = loadAverage();
  for (const name of ALL_SERVICES) printRow(name, "idle", await timeStarts(stack, name));
  console.log(`  (the machine's 1-minute load average, before and after: ${idleSince}, ${loadAverage()})`);

  // A second replica of each service takes the work while the first restarts.
  const replicas = ALL_SERVICES.map((name) => ({ name, before: 0 }));
  for (const replica of replicas) {
    const first = stack.services.find((service) => service.name === replica.name);
    replica.before = first === undefined ? 0 : (await startups(first.logFile)).length;
  }
  for (const replica of replicas) {
    const added = stack.add(replica.name);
    await nextStart(added.logFile, replica.before, () => added.process.exitCode !== null);
  }
  const load = runsInFlight(nc, tracker, LOAD_IN_FLIGHT);
  await sleep(3_000);
  const endedBefore = load.ended();
  const loadStart = performance.now();
  const busySince = loadAverage();
  for (const name of ALL_SERVICES) printRow(name, "busy", await timeStarts(stack, name));
  const loadSeconds = (performance.now() - loadStart) / 1000;
  console.log(
    `  (busy: two replicas of each service, ${LOAD_IN_FLIGHT} hello runs in flight, ` +
      `${Math.round((load.ended() - endedBefore) / loadSeconds)} runs ended per second while the ` +
      `replicas restarted; the machine's load average ${busySince}, then ${loadAverage()})`,
  );
  await load.stop();
} finally {
  tracker.stop();
  await nc.close();
  await stack.stop();
  await stopProcess(nats.child);
  await rm(dir, { recursive: true, force: true });
}
