import type { McpServerConfig } from "../../schemas/mcp.ts";
import type { TelemetryConfig } from "../kit/index.ts";

/**
 * A stdio server gets only the environment its entry names. Tracing settings are added (where the
 * entry does not set them) so a server that traces, like the demo ones, exports its spans to the
 * worker's backend; the trace context itself travels in each request's `_meta`. Exporter
 * headers, which may hold credentials, are not passed on.
 */
export function withTelemetryEnv(server: McpServerConfig, config: TelemetryConfig): McpServerConfig {
  if (server.transport.type !== "stdio") return server;
  const telemetry: Record<string, string> = {
    OTEL_TRACES_EXPORTER: config.OTEL_TRACES_EXPORTER,
    OTEL_EXPORTER_OTLP_ENDPOINT: config.OTEL_EXPORTER_OTLP_ENDPOINT,
    OTEL_EXPORTER_JAEGER_ENDPOINT: config.OTEL_EXPORTER_JAEGER_ENDPOINT,
    OTEL_TRACES_SAMPLER: config.OTEL_TRACES_SAMPLER,
    OTEL_TRACES_SAMPLER_ARG: String(config.OTEL_TRACES_SAMPLER_ARG),
    OTEL_BSP_SCHEDULE_DELAY: String(config.OTEL_BSP_SCHEDULE_DELAY),
    ...(config.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT === undefined
      ? {}
      : { OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: config.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT }),
  };
  return { ...server, transport: { ...server.transport, env: { ...telemetry, ...server.transport.env } } };
}

/**
 * A stdio server also gets the worker's compile cache directory (where the entry does not set
 * one): the demo servers are Node processes, and each loads an MCP SDK at every start of its worker.
 */
export function withCompileCache(server: McpServerConfig, dir: string | undefined): McpServerConfig {
  if (server.transport.type !== "stdio" || dir === undefined) return server;
  return {
    ...server,
    transport: { ...server.transport, env: { NODE_COMPILE_CACHE: dir, ...server.transport.env } },
  };
}
