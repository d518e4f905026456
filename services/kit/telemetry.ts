import type { MsgHdrs, NatsConnection } from "@nats-io/transport-node";
import {
  type Attributes,
  type Context,
  context,
  type Link,
  propagation,
  type Span,
  SpanKind,
  SpanStatusCode,
  TraceFlags,
  trace,
} from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import { CompositePropagator, W3CBaggagePropagator, W3CTraceContextPropagator } from "@opentelemetry/core";
import { resourceFromAttributes } from "@opentelemetry/resources";
import {
  AlwaysOffSampler,
  AlwaysOnSampler,
  BasicTracerProvider,
  BatchSpanProcessor,
  ConsoleSpanExporter,
  type Sampler as OtelSampler,
  ParentBasedSampler,
  type SpanExporter,
  type SpanProcessor,
  TraceIdRatioBasedSampler,
} from "@opentelemetry/sdk-trace-base";
import { ATTR_SERVICE_NAME } from "@opentelemetry/semantic-conventions";
import type { TelemetryConfig } from "./base-config.ts";
import { DeferredSpanExporter } from "./deferred-exporter.ts";
import { LoomError } from "./errors.ts";
import { SpanStreamExporter } from "./span-stream.ts";

export { SpanKind } from "@opentelemetry/api";

/** Values of `OTEL_TRACES_EXPORTER` Loom supports. */
export const TracesExporter = { OTLP: "otlp", JAEGER: "jaeger", CONSOLE: "console", NONE: "none" } as const;
export type TracesExporter = (typeof TracesExporter)[keyof typeof TracesExporter];

/** Values of `OTEL_TRACES_SAMPLER`, as the OpenTelemetry specification names them. */
export const Sampler = {
  ALWAYS_ON: "always_on",
  ALWAYS_OFF: "always_off",
  TRACE_ID_RATIO: "traceidratio",
  PARENT_BASED_ALWAYS_ON: "parentbased_always_on",
  PARENT_BASED_ALWAYS_OFF: "parentbased_always_off",
  PARENT_BASED_TRACE_ID_RATIO: "parentbased_traceidratio",
} as const;
export type Sampler = (typeof Sampler)[keyof typeof Sampler];

/**
 * Whether the sampler leaves every span under an unsampled parent unsampled (the parent-based
 * samplers and always_off): then `withSpan` makes no span there at all, see `withSpan`.
 */
let unsampledParentsDecide = false;

export interface Telemetry {
  /** The `service.name` spans carry. */
  readonly serviceName: string;
  /** From now on, also publish finished spans to `LOOM_SPANS` over this connection. */
  publishSpansTo(nc: NatsConnection): void;
  /** Exports every finished span now (before a short-lived process exits, say). */
  flush(): Promise<void>;
  /** Flushes and stops exporting; call before closing the NATS connection. */
  shutdown(): Promise<void>;
}

/**
 * Installs the tracer provider, the W3C trace-context propagator and the async context manager.
 * Spans are always created so trace ids flow across NATS hops and into logs, whatever the
 * exporter; the sampler decides which are recorded.
 */
export function setupTelemetry(options: {
  service: string;
  config: TelemetryConfig;
  /** Export timeout when `OTEL_EXPORTER_OTLP_TIMEOUT` is not set; 10 s unless given. */
  defaultExportTimeoutMs?: number;
}): Telemetry {
  const { config } = options;
  const exportTimeoutMs = config.OTEL_EXPORTER_OTLP_TIMEOUT ?? options.defaultExportTimeoutMs ?? 10_000;
  const serviceName = config.OTEL_SERVICE_NAME ?? options.service;
  const batch = (exporter: SpanExporter) =>
    new BatchSpanProcessor(exporter, {
      scheduledDelayMillis: config.OTEL_BSP_SCHEDULE_DELAY,
      exportTimeoutMillis: exportTimeoutMs,
    });
  const spanStream = new SpanStreamExporter(serviceName);
  const spanProcessors: SpanProcessor[] = [];
  const exporter = backendExporter(config, exportTimeoutMs);
  if (exporter !== undefined) spanProcessors.push(batch(exporter));
  if (config.LOOM_TRACE_STREAM) spanProcessors.push(batch(spanStream));
  const provider = new BasicTracerProvider({
    resource: resourceFromAttributes({ [ATTR_SERVICE_NAME]: serviceName }),
    sampler: sampler(config),
    spanProcessors,
  });
  register(provider);
  unsampledParentsDecide =
    config.OTEL_TRACES_SAMPLER.startsWith("parentbased_") ||
    config.OTEL_TRACES_SAMPLER === Sampler.ALWAYS_OFF;
  return {
    serviceName,
    publishSpansTo: (nc) => spanStream.attach(nc),
    // Spans are diagnostics: a tracing backend that is down must not fail the work or its shutdown.
    flush: () => provider.forceFlush().catch(() => undefined),
    shutdown: () => provider.shutdown().catch(() => undefined),
  };
}

/**
 * What `NodeTracerProvider.register()` does, without loading `@opentelemetry/sdk-trace-node`, which
 * brings its own copy of the SDK's packages (some eighty more modules to load at every start).
 */
function register(provider: BasicTracerProvider): void {
  trace.setGlobalTracerProvider(provider);
  const contextManager = new AsyncLocalStorageContextManager();
  contextManager.enable();
  context.setGlobalContextManager(contextManager);
  propagation.setGlobalPropagator(
    new CompositePropagator({
      propagators: [new W3CTraceContextPropagator(), new W3CBaggagePropagator()],
    }),
  );
}

function backendExporter(config: TelemetryConfig, timeoutMillis: number): SpanExporter | undefined {
  switch (config.OTEL_TRACES_EXPORTER) {
    case TracesExporter.OTLP:
      return new DeferredSpanExporter(async () => {
        const { OTLPTraceExporter } = await import("@opentelemetry/exporter-trace-otlp-http");
        return new OTLPTraceExporter({
          url:
            config.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT ??
            `${config.OTEL_EXPORTER_OTLP_ENDPOINT.replace(/\/$/, "")}/v1/traces`,
          timeoutMillis,
        });
      });
    case TracesExporter.JAEGER:
      return new DeferredSpanExporter(async () => {
        const { JaegerExporter } = await import("@opentelemetry/exporter-jaeger");
        return new JaegerExporter({ endpoint: config.OTEL_EXPORTER_JAEGER_ENDPOINT });
      });
    case TracesExporter.CONSOLE:
      return new ConsoleSpanExporter();
    case TracesExporter.NONE:
      return undefined;
  }
}

function sampler(config: TelemetryConfig): OtelSampler {
  const ratio = new TraceIdRatioBasedSampler(config.OTEL_TRACES_SAMPLER_ARG);
  switch (config.OTEL_TRACES_SAMPLER) {
    case Sampler.ALWAYS_ON:
      return new AlwaysOnSampler();
    case Sampler.ALWAYS_OFF:
      return new AlwaysOffSampler();
    case Sampler.TRACE_ID_RATIO:
      return ratio;
    case Sampler.PARENT_BASED_ALWAYS_ON:
      return new ParentBasedSampler({ root: new AlwaysOnSampler() });
    case Sampler.PARENT_BASED_ALWAYS_OFF:
      return new ParentBasedSampler({ root: new AlwaysOffSampler() });
    case Sampler.PARENT_BASED_TRACE_ID_RATIO:
      return new ParentBasedSampler({ root: ratio });
  }
}

const tracer = () => trace.getTracer("loom");

/**
 * Runs `work` inside a new span that ends when it settles. A throw marks the span as an error
 * with `error.type`: the LoomError's code, else the error's class name. Under an unsampled parent,
 * with a sampler that follows its parent, no span is made: `work` gets the parent's, unrecorded.
 */
export async function withSpan<T>(
  name: string,
  options: { kind?: SpanKind; attributes?: Attributes; parent?: Context; links?: Link[] },
  work: (span: Span) => Promise<T>,
): Promise<T> {
  const parent = options.parent ?? context.active();
  const parentSpan = trace.getSpanContext(parent);
  if (
    unsampledParentsDecide &&
    parentSpan !== undefined &&
    (parentSpan.traceFlags & TraceFlags.SAMPLED) === 0
  ) {
    // A span here would never be recorded: make none (no ids, no sampling call, no context switch
    // of its own). The parent's context travels on, so the trace id still reaches logs and audit.
    const unrecorded = trace.wrapSpanContext(parentSpan);
    return parent === context.active() ? work(unrecorded) : context.with(parent, () => work(unrecorded));
  }
  return tracer().startActiveSpan(
    name,
    {
      kind: options.kind ?? SpanKind.INTERNAL,
      attributes: options.attributes ?? {},
      ...(options.links === undefined ? {} : { links: options.links }),
    },
    parent,
    async (span) => {
      try {
        return await work(span);
      } catch (error) {
        markFailed(span, errorType(error), error instanceof Error ? error.message : String(error));
        span.recordException(error instanceof Error ? error : String(error));
        throw error;
      } finally {
        span.end();
      }
    },
  );
}

/** Marks a span failed with the semantic-convention `error.type`. */
export function markFailed(span: Span, type: string, message: string): void {
  span.setAttribute("error.type", type);
  span.setStatus({ code: SpanStatusCode.ERROR, message });
}

/** The `error.type` of a failure: a LoomError's code, else the error's class name. */
export function errorType(error: unknown): string {
  if (error instanceof LoomError) return error.code;
  if (error instanceof Error) return error.name;
  return "_OTHER";
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

/**
 * The active trace context as plain fields, for an MCP request's `params._meta` (the MCP semantic
 * conventions carry `traceparent` and `tracestate` there) or a stored record.
 */
export function traceContextFields(): Record<string, string> {
  const fields: Record<string, string> = {};
  propagation.inject(context.active(), fields);
  return fields;
}

/** The context that plain fields (an MCP `_meta`, a stored record) carry; the active one if none. */
export function contextFromFields(fields: Record<string, unknown> | undefined): Context {
  if (fields === undefined) return context.active();
  const strings: Record<string, string> = {};
  for (const [key, value] of Object.entries(fields)) if (typeof value === "string") strings[key] = value;
  return propagation.extract(context.active(), strings);
}

/** One stretch of a run driven by this process; `context` is where its steps' spans go. */
export interface RunSpan {
  context: Context;
  end(): void;
}

/**
 * The span of one stretch of a run: the first drive, a resumption after a crash, a continuation
 * after an approval. Each is a child of the run's stored trace context, so a run is one trace
 * however many processes drive it. A stretch that did not start inside that trace (a takeover
 * by the sweeper, an approver's request) is marked `loom.run.resumed` and linked to the stored
 * context and to what triggered it: the span that drove the run before may be gone, unexported,
 * with its process.
 */
export function startRunSpan(
  name: string,
  attributes: Attributes,
  stored: Record<string, string> | undefined,
): RunSpan {
  const active = context.active();
  const trigger = trace.getSpanContext(active);
  const parent = stored === undefined ? active : contextFromFields(stored);
  const origin = trace.getSpanContext(parent);
  const resumed = origin !== undefined && trigger?.traceId !== origin.traceId;
  const links: Link[] = [];
  if (resumed) {
    links.push({ context: origin, attributes: { "loom.link.reason": "resumed" } });
    if (trigger !== undefined)
      links.push({ context: trigger, attributes: { "loom.link.reason": "triggered" } });
  }
  const span = tracer().startSpan(
    name,
    {
      kind: SpanKind.INTERNAL,
      attributes: { ...attributes, ...(resumed ? { "loom.run.resumed": true } : {}) },
      links,
    },
    parent,
  );
  return { context: trace.setSpan(parent, span), end: () => span.end() };
}

/** Runs `work` with `ctx` as the active context (spans it starts become children of ctx's span). */
export function inContext<T>(ctx: Context, work: () => T): T {
  return context.with(ctx, work);
}

/** The active context, to run later work (a callback from elsewhere) under the same span. */
export function activeContext(): Context {
  return context.active();
}

/** The active span's trace id, for messages that record it (audit records, CLI output). */
export function activeTraceId(): string | undefined {
  return trace.getActiveSpan()?.spanContext().traceId;
}
