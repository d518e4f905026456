import type { MsgHdrs } from "@nats-io/transport-node";
import {
  type Attributes,
  type Context,
  context,
  propagation,
  type Span,
  SpanKind,
  SpanStatusCode,
  trace,
} from "@opentelemetry/api";
import { ConsoleSpanExporter, SimpleSpanProcessor, type SpanProcessor } from "@opentelemetry/sdk-trace-base";
import { NodeTracerProvider } from "@opentelemetry/sdk-trace-node";

export { SpanKind } from "@opentelemetry/api";

export const TracesExporter = { NONE: "none", CONSOLE: "console" } as const;
export type TracesExporter = (typeof TracesExporter)[keyof typeof TracesExporter];

/**
 * Installs the tracer provider, the W3C trace-context propagator and the async context manager.
 * Spans are always created so trace ids flow across NATS hops and into logs; exporting them is
 * chosen by `exporter`.
 */
export function setupTelemetry(options: { service: string; exporter: TracesExporter }): {
  shutdown(): Promise<void>;
} {
  const spanProcessors: SpanProcessor[] =
    options.exporter === TracesExporter.CONSOLE ? [new SimpleSpanProcessor(new ConsoleSpanExporter())] : [];
  const provider = new NodeTracerProvider({ spanProcessors });
  provider.register();
  return { shutdown: () => provider.shutdown() };
}

const tracer = () => trace.getTracer("loom");

/** Runs `work` inside a new span that ends when it settles, recording an error if it throws. */
export async function withSpan<T>(
  name: string,
  options: { kind?: SpanKind; attributes?: Attributes; parent?: Context },
  work: (span: Span) => Promise<T>,
): Promise<T> {
  const parent = options.parent ?? context.active();
  return tracer().startActiveSpan(
    name,
    { kind: options.kind ?? SpanKind.INTERNAL, attributes: options.attributes ?? {} },
    parent,
    async (span) => {
      try {
        return await work(span);
      } catch (error) {
        span.recordException(error instanceof Error ? error : String(error));
        span.setStatus({
          code: SpanStatusCode.ERROR,
          message: error instanceof Error ? error.message : String(error),
        });
        throw error;
      } finally {
        span.end();
      }
    },
  );
}

/** Writes the active trace context (`traceparent`, `tracestate`) into NATS headers. */
export function injectTraceContext(headers: MsgHdrs): void {
  propagation.inject(context.active(), headers, {
    set: (carrier, key, value) => carrier.set(key, value),
  });
}

/** Reads a trace context from NATS headers, so a consumer's span joins the producer's trace. */
export function extractTraceContext(headers: MsgHdrs | undefined): Context {
  if (headers === undefined) return context.active();
  return propagation.extract(context.active(), headers, {
    get: (carrier, key) => (carrier.has(key) ? carrier.get(key) : undefined),
    keys: (carrier) => carrier.keys(),
  });
}

/** The active span's trace id, for messages that record it (audit records, CLI output). */
export function activeTraceId(): string | undefined {
  return trace.getActiveSpan()?.spanContext().traceId;
}
