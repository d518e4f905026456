import { DeliverPolicy, type JetStreamClient } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { SpanKind, SpanStatusCode } from "@opentelemetry/api";
import { type ExportResult, ExportResultCode, hrTimeToMilliseconds } from "@opentelemetry/core";
import type { ReadableSpan, SpanExporter } from "@opentelemetry/sdk-trace-base";
import { Streams, spansSubject } from "../../schemas/subjects.ts";
import { type SpanRecord, SpanRecordSchema } from "../../schemas/telemetry.ts";
import { parsePayload } from "./bus.ts";

const encoder = new TextEncoder();

const KIND_NAMES: Record<SpanKind, string> = {
  [SpanKind.INTERNAL]: "internal",
  [SpanKind.SERVER]: "server",
  [SpanKind.CLIENT]: "client",
  [SpanKind.PRODUCER]: "producer",
  [SpanKind.CONSUMER]: "consumer",
};

/**
 * Publishes finished spans to `loom.v1.spans.<traceId>` (stream `LOOM_SPANS`), so a run can be
 * drawn from NATS alone when no tracing backend is at hand. Core publishes, no acknowledgement:
 * spans are a diagnostic, never worth slowing a run down for. Spans that end before a connection
 * is attached are dropped.
 */
export class SpanStreamExporter implements SpanExporter {
  readonly #service: string;
  #nc: NatsConnection | undefined;

  constructor(service: string) {
    this.#service = service;
  }

  attach(nc: NatsConnection): void {
    this.#nc = nc;
  }

  export(spans: ReadableSpan[], done: (result: ExportResult) => void): void {
    const nc = this.#nc;
    if (nc === undefined || nc.isClosed()) {
      done({ code: ExportResultCode.SUCCESS });
      return;
    }
    try {
      for (const span of spans) {
        const record = toSpanRecord(span, this.#service);
        nc.publish(spansSubject(record.traceId), encoder.encode(JSON.stringify(record)));
      }
      done({ code: ExportResultCode.SUCCESS });
    } catch (error) {
      done({
        code: ExportResultCode.FAILED,
        error: error instanceof Error ? error : new Error(String(error)),
      });
    }
  }

  async shutdown(): Promise<void> {
    await this.forceFlush();
    this.#nc = undefined;
  }

  async forceFlush(): Promise<void> {
    const nc = this.#nc;
    if (nc !== undefined && !nc.isClosed()) await nc.flush();
  }
}

export function toSpanRecord(span: ReadableSpan, service: string): SpanRecord {
  const { traceId, spanId } = span.spanContext();
  const attributes: SpanRecord["attributes"] = {};
  for (const [key, value] of Object.entries(span.attributes)) {
    if (typeof value === "string" || typeof value === "number" || typeof value === "boolean") {
      attributes[key] = value;
    } else if (Array.isArray(value)) {
      attributes[key] = value.join(",");
    }
  }
  const status =
    span.status.code === SpanStatusCode.ERROR
      ? "error"
      : span.status.code === SpanStatusCode.OK
        ? "ok"
        : "unset";
  return {
    traceId,
    spanId,
    ...(span.parentSpanContext === undefined ? {} : { parentSpanId: span.parentSpanContext.spanId }),
    name: span.name,
    kind: KIND_NAMES[span.kind],
    service,
    startMs: hrTimeToMilliseconds(span.startTime),
    durationMs: hrTimeToMilliseconds(span.duration),
    status,
    ...(span.status.message === undefined ? {} : { statusMessage: span.status.message }),
    attributes,
    links: span.links.map((link) => ({ traceId: link.context.traceId, spanId: link.context.spanId })),
  };
}

/** Every span of a trace stored in `LOOM_SPANS` so far; none when the stream does not exist. */
export async function readSpans(js: JetStreamClient, traceId: string): Promise<SpanRecord[]> {
  let consumer: Awaited<ReturnType<typeof js.consumers.get>>;
  try {
    consumer = await js.consumers.get(Streams.SPANS, {
      // A single string (not an array) keeps this working on nats-server 2.9.
      filter_subjects: spansSubject(traceId),
      deliver_policy: DeliverPolicy.All,
    });
  } catch {
    return [];
  }
  const spans: SpanRecord[] = [];
  for (;;) {
    const batch = await consumer.fetch({ max_messages: 1_000, expires: 1_000 });
    let received = 0;
    let pending = 0;
    for await (const message of batch) {
      received++;
      pending = message.info.pending;
      spans.push(parsePayload(SpanRecordSchema, message.data, "span record"));
    }
    if (received === 0 || pending === 0) return spans;
  }
}
