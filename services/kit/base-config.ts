import { z } from "zod";
import { LogFormat } from "./logger.ts";
import { Sampler, TracesExporter } from "./telemetry.ts";

const flag = z.enum(["true", "false", "1", "0"]).transform((value) => value === "true" || value === "1");

/**
 * The OpenTelemetry settings, under their standard variable names, that every process making spans
 * reads: the services, the CLI and the demo MCP servers.
 */
export const TelemetryConfigSchema = z.object({
  /** Overrides the process's own name as `service.name` (useful for replicas). */
  OTEL_SERVICE_NAME: z.string().min(1).optional(),
  OTEL_TRACES_EXPORTER: z.enum(TracesExporter).default(TracesExporter.OTLP),
  /** Base URL of an OTLP/HTTP receiver; traces go to `<endpoint>/v1/traces`. */
  OTEL_EXPORTER_OTLP_ENDPOINT: z.url().default("http://localhost:4318"),
  /** Full URL for traces, when it is not `<OTEL_EXPORTER_OTLP_ENDPOINT>/v1/traces`. */
  OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: z.url().optional(),
  /** Jaeger's collector (Thrift over HTTP), for `OTEL_TRACES_EXPORTER=jaeger`. */
  OTEL_EXPORTER_JAEGER_ENDPOINT: z.url().default("http://localhost:14268/api/traces"),
  /** Longest one export may take, in milliseconds (default 10 s; 500 ms for the CLI). */
  OTEL_EXPORTER_OTLP_TIMEOUT: z.coerce.number().int().positive().optional(),
  OTEL_TRACES_SAMPLER: z.enum(Sampler).default(Sampler.PARENT_BASED_ALWAYS_ON),
  /** The ratio for the `traceidratio` samplers, 0 to 1. */
  OTEL_TRACES_SAMPLER_ARG: z.coerce.number().min(0).max(1).default(1),
  /** Milliseconds between two exports of finished spans. */
  OTEL_BSP_SCHEDULE_DELAY: z.coerce.number().int().positive().default(5_000),
  /** Also publish finished spans to the `LOOM_SPANS` stream, which `loom runs trace` reads. */
  LOOM_TRACE_STREAM: flag.default(true),
});
export type TelemetryConfig = z.infer<typeof TelemetryConfigSchema>;

/** Settings every service reads; each service's config extends this schema. */
export const BaseConfigSchema = TelemetryConfigSchema.extend({
  NATS_URL: z.string().default("nats://127.0.0.1:4222"),
  LOG_LEVEL: z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).default("info"),
  /** `json` (one object a line) or `pretty` (for a person; needs the pino-pretty dev dependency). */
  LOG_FORMAT: z.enum(LogFormat).default(LogFormat.JSON),
  /** Port of the HTTP server with /metrics, /healthz and /readyz; 0 picks a free one (logged). */
  LOOM_HTTP_PORT: z.coerce.number().int().min(0).max(65_535).optional(),
  LOOM_HTTP_HOST: z.string().default("0.0.0.0"),
  /**
   * Replicas of every stream and KV bucket (1 to 5). `auto` (the default): 3 when the cluster has
   * at least three servers, else 1. Existing streams and buckets are moved to it at start.
   */
  LOOM_STREAM_REPLICAS: z
    .union([z.literal("auto"), z.coerce.number().int().min(1).max(5)])
    .default("auto")
    .transform((value) => (value === "auto" ? undefined : value)),
});
export type BaseConfig = z.infer<typeof BaseConfigSchema>;
