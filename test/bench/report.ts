/** The bench's tables: latencies against issue 12's targets, bus counts per step, CPU per run. */
import type { TapCounts } from "./bus-tap.ts";
import type { CounterDelta } from "./monitor.ts";

export interface Measurement {
  name: string;
  latenciesMs: number[];
  elapsedMs: number;
  /** CPU ms per run (or call), by process. */
  cpuPerRunMs: Map<string, number>;
}

/** What `runs` sequential runs cost on the bus, `steps` tool calls each. */
export interface CountRow {
  name: string;
  steps: number;
  runs: number;
  delta: CounterDelta;
  tapped: TapCounts;
}

/** Issue 12's targets: the goal, and the figure it may be resolved at. */
const TARGETS: { row: string; text: string; met: (p50: number, perSecond: number) => string }[] = [
  {
    row: "loom 3 steps in a row, 1 in flight",
    text: "p50 ≤ 2.5 ms (resolve ≤ 5)",
    met: (p50) => (p50 <= 2.5 ? "goal met" : p50 <= 5 ? "resolve met" : "missed"),
  },
  {
    row: "loom 3 steps in a row, 64 in flight",
    text: "≥ 1,000 runs/s (resolve ≥ 500)",
    met: (_, perSecond) => (perSecond >= 1_000 ? "goal met" : perSecond >= 500 ? "resolve met" : "missed"),
  },
  {
    row: "MCP gateway tools/call, 1 in flight",
    text: "p50 ≤ 1.5 ms",
    met: (p50) => (p50 <= 1.5 ? "goal met" : "missed"),
  },
];
const MAX_ROUND_TRIPS_PER_STEP = 2;
const MAX_MESSAGES_PER_STEP = 8;

/** Measured by issue 12 on this machine, not in this run: the reference the targets come from. */
const REFERENCE = [
  ["three direct MCP calls, no durability (the limit)", "0.9 ms", "6,184"],
  ["DBOS Transact 5.3, Postgres 15 (no policy, no audit)", "9.5 ms", "316"],
  ["LangGraph.js 1.7 with PostgresSaver", "9.6 ms", "207"],
  ["Loom on main when the issue was filed", "45 ms", "137"],
];

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN;
}

function printTable(header: string[], rows: string[][]): void {
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
}

const perStep = (value: number, row: CountRow) => (value / (row.runs * row.steps)).toFixed(1);

/** `kind 1.0, other 0.5` per step, largest first. */
function breakdown(values: Map<string, number>, row: CountRow): string {
  return [...values]
    .sort((a, b) => b[1] - a[1])
    .map(([kind, n]) => `${kind} ${perStep(n, row)}`)
    .join(", ");
}

export function printReport(report: {
  results: Measurement[];
  counts: CountRow[];
  settings: string[];
  waiting?: { runs: number; seconds: number; idleMb: number; waitingMb: number };
}): void {
  const { results, counts } = report;
  console.log("Latency and throughput (per s: runs, or calls, completed per second)\n");
  printTable(
    ["measurement", "n", "p50 ms", "p99 ms", "per s", "CPU ms/run", "target (issue 12)", ""],
    results.map((result) => {
      const p50 = percentile(result.latenciesMs, 50);
      const perSecond = (result.latenciesMs.length / result.elapsedMs) * 1000;
      const target = TARGETS.find((candidate) => candidate.row === result.name);
      const cpu = [...result.cpuPerRunMs.values()].reduce((sum, ms) => sum + ms, 0);
      return [
        result.name,
        String(result.latenciesMs.length),
        p50.toFixed(2),
        percentile(result.latenciesMs, 99).toFixed(2),
        perSecond.toFixed(0),
        cpu.toFixed(1),
        target?.text ?? "",
        target?.met(p50, perSecond) ?? "",
      ];
    }),
  );
  for (const line of report.settings) console.log(line);

  console.log(
    `\nOn the bus, per step (per tool call), over sequential runs; targets ≤ ${MAX_ROUND_TRIPS_PER_STEP} round trips, ≤ ${MAX_MESSAGES_PER_STEP} messages\n`,
  );
  printTable(
    [
      "workload",
      "round trips",
      "messages (varz in)",
      "delivered (varz out)",
      "seen by tap",
      "JetStream writes",
      "subscriptions made",
      "consumers left",
    ],
    counts.map((row) => [
      row.name,
      perStep(
        [...row.tapped.roundTrips.values()].reduce((sum, n) => sum + n, 0),
        row,
      ),
      perStep(row.delta.inMsgs, row),
      perStep(row.delta.outMsgs, row),
      perStep(row.tapped.messages, row),
      perStep(row.delta.jetStreamWrites, row),
      perStep(row.delta.subscriptionsCreated, row),
      String(row.delta.consumersLeft),
    ]),
  );
  for (const row of counts) {
    if (row.tapped.roundTrips.size > 0)
      console.log(`${row.name}: round trips per step: ${breakdown(row.tapped.roundTrips, row)}`);
    if (row.delta.writesByStream.size > 0)
      console.log(`${row.name}: JetStream writes per step: ${breakdown(row.delta.writesByStream, row)}`);
  }

  const processes = [...new Set(results.flatMap((result) => [...result.cpuPerRunMs.keys()]))];
  console.log("\nCPU ms per run (or call), by process, from /proc/<pid>/stat (10 ms ticks, averaged)\n");
  printTable(
    ["measurement", ...processes],
    results.map((result) => [
      result.name,
      ...processes.map((process) => (result.cpuPerRunMs.get(process) ?? 0).toFixed(2)),
    ]),
  );

  console.log("\nReference: measured by issue 12 on this machine, not in this run (3 steps, echo)\n");
  printTable(["system", "sequential p50", "runs/s at 64 in flight"], REFERENCE);

  if (report.waiting !== undefined) {
    const { runs, seconds, idleMb, waitingMb } = report.waiting;
    console.log(
      `\norchestrator memory: ${idleMb.toFixed(0)} MB RSS after the runs above, ${waitingMb.toFixed(0)} MB with ${runs} runs ` +
        `waiting in input-required (${(((waitingMb - idleMb) * 1024) / Math.max(1, runs)).toFixed(1)} KB per waiting run; ` +
        `${runs} parked in ${seconds.toFixed(0)} s)`,
    );
  }
}
