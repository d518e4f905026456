import { DeliverPolicy, type JetStreamClient } from "@nats-io/jetstream";
import { AuditKind, type AuditRecord, AuditRecordSchema } from "../../schemas/audit.ts";
import { PolicyAction } from "../../schemas/policy.ts";
import { auditSubject, MCP_WORKER_SERVICE, runToolCallsFilter, Streams } from "../../schemas/subjects.ts";
import {
  CallKind,
  type ToolCallRecord,
  ToolCallRecordSchema,
  type ToolCallStreamRecord,
  ToolCallStreamRecordSchema,
} from "../../schemas/tool-calls.ts";
import { describeIssues, type Logger, parsePayload } from "../kit/index.ts";

/** Messages asked for per pull; the last pull of a read waits at most FETCH_EXPIRES_MS. */
const BATCH = 1_000;
const FETCH_EXPIRES_MS = 1_000;

export interface CallLogQuery {
  /** Only one run's calls and verdicts; every run's (and calls outside runs) by default. */
  runId?: string;
  /** Only records stored at or after this time. */
  since?: Date;
  /** Only records stored at or before this time; up to the end of the streams by default. */
  until?: Date;
}

/** Which kind of call an execution of each action is; other actions (completions) are no calls. */
const CALL_KINDS: Partial<Record<PolicyAction, CallKind>> = {
  [PolicyAction.TOOLS_CALL]: CallKind.TOOL,
  [PolicyAction.RESOURCES_READ]: CallKind.RESOURCE,
  [PolicyAction.PROMPTS_GET]: CallKind.PROMPT,
};

/**
 * The calls the mcp-worker made (or answered from its cache) and the feedback verdicts on them,
 * oldest first, for `loom tools stats` and `loom feedback`. A call is the worker's execution
 * record in `LOOM_AUDIT` that names the server version which served it (a task that never reached
 * a server names none), so a call costs no write of its own; verdicts are in `LOOM_TOOL_CALLS`,
 * beside the call records workers wrote there before (read alike while the stream keeps them).
 * A record that does not parse is logged and skipped, so one bad message cannot hide every other.
 */
export async function readCallLog(
  js: JetStreamClient,
  query: CallLogQuery,
  log: Logger,
): Promise<ToolCallStreamRecord[]> {
  const range = { since: query.since, until: query.until };
  const [executions, recorded] = await Promise.all([
    readStream(js, Streams.AUDIT, { ...range, filter: auditSubject(MCP_WORKER_SERVICE, "*") }, log, (data) =>
      callOf(parsePayload(AuditRecordSchema, data, "audit record"), query.runId),
    ),
    readStream(
      js,
      Streams.TOOL_CALLS,
      { ...range, ...(query.runId === undefined ? {} : { filter: runToolCallsFilter(query.runId) }) },
      log,
      (data) => parsePayload(ToolCallStreamRecordSchema, data, "tool call record"),
    ),
  ]);
  return [...recorded, ...executions].sort((a, b) => a.timestamp.localeCompare(b.timestamp));
}

/** The call an execution record stands for, if it made one (of `runId`'s, when given). */
function callOf(record: AuditRecord, runId: string | undefined): ToolCallRecord | undefined {
  if (record.kind !== AuditKind.TOOL_EXECUTION || record.serverVersion === undefined) return undefined;
  if (runId !== undefined && record.runId !== runId) return undefined;
  const kind = record.action === undefined ? undefined : CALL_KINDS[record.action];
  if (kind === undefined) return undefined;
  // The resource a worker audits is `<server>.<tool>` (or `<server>.<uri>`); server names hold no dot.
  const dot = record.resource.indexOf(".");
  const parsed = ToolCallRecordSchema.safeParse({
    type: "call",
    server: record.resource.slice(0, dot),
    target: record.resource.slice(dot + 1),
    kind,
    serverVersion: record.serverVersion,
    outcome: record.outcome,
    latencyMs: record.latencyMs,
    cached: record.cached ?? false,
    ...(record.runId === undefined ? {} : { runId: record.runId }),
    ...(record.stepId === undefined ? {} : { stepId: record.stepId }),
    timestamp: record.time,
  });
  if (!parsed.success) {
    throw new Error(`execution record ${record.id} names no call: ${describeIssues(parsed.error.issues)}`);
  }
  return parsed.data;
}

/**
 * The records of `stream` stored so far in a time range, through an ordered consumer (no state
 * left on the server beyond its short inactivity threshold). `parse` returns undefined for a
 * record the caller does not want; one that throws is logged and skipped.
 */
async function readStream<T>(
  js: JetStreamClient,
  stream: string,
  range: { filter?: string | undefined; since?: Date | undefined; until?: Date | undefined },
  log: Logger,
  parse: (data: Uint8Array) => T | undefined,
): Promise<T[]> {
  const consumer = await js.consumers.get(stream, {
    // A single string (not an array) keeps this working on nats-server 2.9.
    ...(range.filter === undefined ? {} : { filter_subjects: range.filter }),
    ...(range.since === undefined
      ? { deliver_policy: DeliverPolicy.All }
      : { opt_start_time: range.since.toISOString() }),
  });
  const records: T[] = [];
  const untilNanos = range.until === undefined ? undefined : BigInt(range.until.getTime()) * 1_000_000n;
  try {
    if ((await consumer.info(true)).num_pending === 0) return records;
    for (;;) {
      const batch = await consumer.fetch({ max_messages: BATCH, expires: FETCH_EXPIRES_MS });
      let received = 0;
      let pending = 0;
      let past = false;
      for await (const message of batch) {
        received++;
        pending = message.info.pending;
        past = untilNanos !== undefined && message.info.timestampNanos > untilNanos;
        if (past) break;
        try {
          const record = parse(message.data);
          if (record !== undefined) records.push(record);
        } catch (error) {
          log.warn({ err: error, stream, seq: message.seq }, "skipping a malformed record");
        }
        // Caught up: no need to wait for the pull to expire.
        if (pending === 0) break;
      }
      batch.stop();
      if (received === 0 || pending === 0 || past) return records;
    }
  } finally {
    // Ordered consumers expire after a few idle minutes anyway: a failed delete costs nothing.
    await consumer
      .delete()
      .catch((error: unknown) => log.debug({ err: error }, "ordered consumer not deleted"));
  }
}
