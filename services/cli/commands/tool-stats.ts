import { ToolStatsContract } from "../../../schemas/contracts.ts";
import { Headers, Subjects } from "../../../schemas/subjects.ts";
import type { ToolStats } from "../../../schemas/tool-calls.ts";
import { request } from "../../kit/index.ts";
import { bearerOf, connectCli } from "../connection.ts";
import { ExitCode } from "../exit-codes.ts";
import { table } from "../render.ts";

/** Reading a week of records can take a while; the orchestrator answers once it has them all. */
const STATS_TIMEOUT_MS = 60_000;

/** `loom tools stats [--since 1h]`: calls, errors, latency, cache and feedback per tool and version. */
export async function toolStatsCommand(options: {
  nats: string;
  /** The caller's token: the orchestrator answers only a caller acp-policy authenticates. */
  token: string | undefined;
  sinceMs: number;
  json: boolean;
}): Promise<ExitCode> {
  const nc = await connectCli(options.nats);
  try {
    const stats = await request(
      nc,
      Subjects.TOOLS_STATS,
      ToolStatsContract,
      { sinceMs: options.sinceMs },
      { timeoutMs: STATS_TIMEOUT_MS, headers: { [Headers.AUTHORIZATION]: bearerOf(options.token) } },
    );
    console.log(options.json ? JSON.stringify(stats) : renderStats(stats));
    return ExitCode.OK;
  } finally {
    await nc.close();
  }
}

/** The rows as a table; latency over the calls that reached the server (`-` when none did). */
export function renderStats(stats: ToolStats): string {
  if (stats.rows.length === 0) return `no MCP calls since ${stats.since}`;
  const percent = (share: number) => `${(share * 100).toFixed(1)}%`;
  const ms = (value: number | undefined) => (value === undefined ? "-" : value.toFixed(1));
  return table(
    ["TOOL", "KIND", "VERSION", "CALLS", "ERRORS", "P50 MS", "P95 MS", "P99 MS", "CACHED", "OK", "BAD"],
    stats.rows.map((row) => [
      `${row.server}.${row.target}`,
      row.kind,
      row.serverVersion,
      String(row.calls),
      percent(row.errorRate),
      ms(row.latencyMs?.p50),
      ms(row.latencyMs?.p95),
      ms(row.latencyMs?.p99),
      percent(row.cachedShare),
      String(row.feedback.ok),
      String(row.feedback.bad),
    ]),
  );
}
