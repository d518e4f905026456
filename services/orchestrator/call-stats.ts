import type {
  FeedbackRecord,
  LatencyPercentiles,
  ToolCallStreamRecord,
  ToolStatsRow,
} from "../../schemas/tool-calls.ts";

/**
 * The nearest-rank percentile of ascending `sorted` values: the smallest value that at least `p`
 * percent of the values do not exceed. Undefined for no values.
 */
export function percentile(sorted: readonly number[], p: number): number | undefined {
  if (sorted.length === 0) return undefined;
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
  return sorted[Math.min(rank, sorted.length) - 1];
}

/** p50, p95 and p99 of some latencies (in any order); undefined for none. */
export function latencyPercentiles(latencies: readonly number[]): LatencyPercentiles | undefined {
  const sorted = [...latencies].sort((a, b) => a - b);
  const [p50, p95, p99] = [50, 95, 99].map((p) => percentile(sorted, p));
  if (p50 === undefined || p95 === undefined || p99 === undefined) return undefined;
  return { p50, p95, p99 };
}

interface Group {
  key: Pick<ToolStatsRow, "server" | "target" | "kind" | "serverVersion">;
  calls: number;
  errors: number;
  cached: number;
  /** Of the calls that reached the server. */
  latencies: number[];
  /** The latest verdict of each person on each step: `runId stepId by` -> verdict. */
  verdicts: Map<string, FeedbackRecord["verdict"]>;
}

/**
 * Aggregates call records and feedback into one row per tool (or resource, or prompt) and server
 * version, sorted by server, target and version: what an A/B rollout is judged by. Latency
 * percentiles cover the calls that reached the server, since a cache hit says nothing about the
 * server's speed. A person's later verdict on a step replaces their earlier one; verdicts of
 * different people all count.
 */
export function aggregateCallStats(records: Iterable<ToolCallStreamRecord>): ToolStatsRow[] {
  const groups = new Map<string, Group>();
  for (const record of records) {
    const key = {
      server: record.server,
      target: record.target,
      kind: record.kind,
      serverVersion: record.serverVersion,
    };
    const id = JSON.stringify([key.server, key.kind, key.target, key.serverVersion]);
    let group = groups.get(id);
    if (group === undefined) {
      group = { key, calls: 0, errors: 0, cached: 0, latencies: [], verdicts: new Map() };
      groups.set(id, group);
    }
    if (record.type === "feedback") {
      group.verdicts.set(JSON.stringify([record.runId, record.stepId, record.by]), record.verdict);
      continue;
    }
    group.calls++;
    if (record.outcome !== "ok") group.errors++;
    if (record.cached) group.cached++;
    else group.latencies.push(record.latencyMs);
  }
  return [...groups.values()]
    .map((group): ToolStatsRow => {
      const verdicts = [...group.verdicts.values()];
      const latencyMs = latencyPercentiles(group.latencies);
      return {
        ...group.key,
        calls: group.calls,
        errors: group.errors,
        errorRate: group.calls === 0 ? 0 : group.errors / group.calls,
        ...(latencyMs === undefined ? {} : { latencyMs }),
        cached: group.cached,
        cachedShare: group.calls === 0 ? 0 : group.cached / group.calls,
        feedback: {
          ok: verdicts.filter((verdict) => verdict === "ok").length,
          bad: verdicts.filter((verdict) => verdict === "bad").length,
        },
      };
    })
    .sort(
      (a, b) =>
        a.server.localeCompare(b.server) ||
        a.target.localeCompare(b.target) ||
        a.serverVersion.localeCompare(b.serverVersion),
    );
}
