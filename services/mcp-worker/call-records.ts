import type { JetStreamClient } from "@nats-io/jetstream";
import { toolCallsSubject } from "../../schemas/subjects.ts";
import { type ToolCallRecord, ToolCallRecordSchema } from "../../schemas/tool-calls.ts";
import { encodePayload, type Logger } from "../kit/index.ts";

/** A record that JetStream has not acknowledged within this long is given up on (and logged). */
const PUBLISH_TIMEOUT_MS = 2_000;

/**
 * Appends one record per MCP call to stream `LOOM_TOOL_CALLS`, which `loom tools stats` and
 * `loom feedback` read. A record that cannot be stored is logged, not thrown: the call it
 * describes has already happened, and losing a statistic must not fail the user's step.
 */
export class CallRecords {
  readonly #js: JetStreamClient;
  readonly #log: Logger;

  constructor(js: JetStreamClient, log: Logger) {
    this.#js = js;
    this.#log = log;
  }

  async append(record: ToolCallRecord): Promise<void> {
    try {
      await this.#js.publish(
        toolCallsSubject(record.server, record.runId),
        encodePayload(ToolCallRecordSchema, record, "tool call record"),
        { timeout: PUBLISH_TIMEOUT_MS },
      );
    } catch (error) {
      this.#log.warn(
        { err: error, mcp_server: record.server, target: record.target, run_id: record.runId },
        "tool call record not stored; loom tools stats will miss this call",
      );
    }
  }
}
