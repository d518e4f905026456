import { DeliverPolicy, type JetStreamClient } from "@nats-io/jetstream";
import { Streams } from "../../schemas/subjects.ts";
import { type ToolCallStreamRecord, ToolCallStreamRecordSchema } from "../../schemas/tool-calls.ts";
import { type Logger, parsePayload } from "../kit/index.ts";

/** Messages asked for per pull; the last pull of a read waits at most FETCH_EXPIRES_MS. */
const BATCH = 1_000;
const FETCH_EXPIRES_MS = 1_000;

export interface CallLogQuery {
  /** Only subjects matching this filter (for example one run's records); all by default. */
  filter?: string;
  /** Only records stored at or after this time. */
  since?: Date;
}

/**
 * Reads the records of stream `LOOM_TOOL_CALLS` stored so far, through an ordered consumer (no
 * state left on the server beyond its short inactivity threshold). A record that does not parse
 * is logged and skipped, so one bad message cannot hide every other.
 */
export async function readCallLog(
  js: JetStreamClient,
  query: CallLogQuery,
  log: Logger,
): Promise<ToolCallStreamRecord[]> {
  const consumer = await js.consumers.get(Streams.TOOL_CALLS, {
    // A single string (not an array) keeps this working on nats-server 2.9.
    ...(query.filter === undefined ? {} : { filter_subjects: query.filter }),
    ...(query.since === undefined
      ? { deliver_policy: DeliverPolicy.All }
      : { opt_start_time: query.since.toISOString() }),
  });
  const records: ToolCallStreamRecord[] = [];
  try {
    if ((await consumer.info(true)).num_pending === 0) return records;
    for (;;) {
      const batch = await consumer.fetch({ max_messages: BATCH, expires: FETCH_EXPIRES_MS });
      let received = 0;
      let pending = 0;
      for await (const message of batch) {
        received++;
        pending = message.info.pending;
        try {
          records.push(parsePayload(ToolCallStreamRecordSchema, message.data, "tool call record"));
        } catch (error) {
          log.warn({ err: error, seq: message.seq }, "skipping a malformed record in LOOM_TOOL_CALLS");
        }
        // Caught up: no need to wait for the pull to expire.
        if (pending === 0) break;
      }
      batch.stop();
      if (received === 0 || pending === 0) return records;
    }
  } finally {
    // Ordered consumers expire after a few idle minutes anyway: a failed delete costs nothing.
    await consumer
      .delete()
      .catch((error: unknown) => log.debug({ err: error }, "ordered consumer not deleted"));
  }
}
