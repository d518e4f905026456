import type { JetStreamClient } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { ToolStatsContract } from "../../schemas/contracts.ts";
import { Subjects } from "../../schemas/subjects.ts";
import type { ToolStats } from "../../schemas/tool-calls.ts";
import { authenticate, type Logger, type Service, serve } from "../kit/index.ts";
import { readCallLog } from "./call-log.ts";
import { aggregateCallStats } from "./call-stats.ts";

/**
 * Serves `loom tools stats`: the orchestrator reads the worker's execution records (`LOOM_AUDIT`)
 * and the feedback verdicts (`LOOM_TOOL_CALLS`) and aggregates them, so callers need no JetStream
 * access to the raw records (which name runs and steps), only the right
 * to ask on `loom.v1.tools.stats` with a token acp-policy accepts (anything else is UNAUTHENTICATED).
 * One replica of the queue group answers each request.
 */
export function serveToolStats(options: {
  nc: NatsConnection;
  js: JetStreamClient;
  log: Logger;
  policyTimeoutMs: number;
}): Service {
  return serve(options.nc, {
    subject: Subjects.TOOLS_STATS,
    queue: "orchestrator-tool-stats",
    contract: ToolStatsContract,
    log: options.log,
    handle: async (body, context) => {
      await authenticate(options.nc, context.authorization, options.policyTimeoutMs);
      const until = new Date();
      const since = new Date(until.getTime() - body.sinceMs);
      const records = await readCallLog(options.js, { since }, options.log);
      return {
        since: since.toISOString(),
        until: until.toISOString(),
        rows: aggregateCallStats(records),
      } satisfies ToolStats;
    },
  });
}
