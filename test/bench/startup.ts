/**
 * `npm run bench:startup`: how soon each service is ready after its process starts, the time a
 * crash-looping replica loses. The whole stack runs; each service in turn is stopped and started
 * again `BENCH_STARTS` times beside the others, and its "started" log line is awaited: the line's
 * `startup_ms` (process start to ready, module loading included) and the wall-clock time from the
 * spawn are printed per service.
 */
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";
import { connect } from "@nats-io/transport-node";
import { launchNatsServer, stopProcess } from "../../services/cli/nats-server.ts";
import { ALL_SERVICES, startStack, waitUntilReady } from "../../services/cli/stack.ts";
import { TEST_AUTH_ENV } from "../helpers/tokens.ts";

const STARTS = Number(process.env.BENCH_STARTS ?? 5);
const STARTED = /"startup_ms":(\d+)[^\n]*"msg":"started"/g;

/** The `startup_ms` of every "started" line the log holds so far. */
async function startups(logFile: string): Promise<number[]> {
  const text = await readFile(logFile, "utf8").catch(() => "");
  return [...text.matchAll(STARTED)].map((match) => Number(match[1]));
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? Number.NaN;
}

const dir = await mkdtemp(join(tmpdir(), "loom-bench-startup-"));
const nats = await launchNatsServer({ storeDir: join(dir, "nats") });
const stack = await startStack({
  natsUrl: nats.url,
  logDir: join(dir, "logs"),
  env: { LOG_LEVEL: "info", LOOM_A2A_PORT: "0", ...TEST_AUTH_ENV },
});
const nc = await connect({ servers: nats.url });
try {
  await waitUntilReady(nc, { tools: ["time.get_time"], timeoutMs: 60_000, stack });
  console.log(`service start to ready, ${STARTS} starts each beside the running stack (ms):`);
  for (const name of ALL_SERVICES) {
    const own: number[] = [];
    const wall: number[] = [];
    for (let start = 0; start < STARTS; start++) {
      const service = stack.services.find((candidate) => candidate.name === name);
      if (service === undefined) throw new Error(`no ${name} in the stack`);
      const before = (await startups(service.logFile)).length;
      const restarted = await stack.restart(name);
      const spawned = performance.now();
      for (;;) {
        const seen = await startups(restarted.logFile);
        if (seen.length > before) {
          wall.push(Math.round(performance.now() - spawned));
          own.push(seen[seen.length - 1] ?? Number.NaN);
          break;
        }
        if (restarted.process.exitCode !== null) throw new Error(`${name} exited while starting`);
        await sleep(20);
      }
    }
    console.log(
      `  ${name.padEnd(12)} startup_ms median ${median(own)} max ${Math.max(...own)}; from spawn median ${median(wall)} max ${Math.max(...wall)}`,
    );
  }
} finally {
  await nc.close();
  await stack.stop();
  await stopProcess(nats.child);
  await rm(dir, { recursive: true, force: true });
}
