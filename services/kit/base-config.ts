import { z } from "zod";
import { hostEntryProblem, LOOPBACK_ORIGINS, originEntryProblem } from "./http-guard.ts";
import { LogFormat } from "./logger.ts";
import { Sampler, TracesExporter } from "./telemetry.ts";

const flag = z.enum(["true", "false", "1", "0"]).transform((value) => value === "true" || value === "1");

/**
 * The OpenTelemetry settings, under their standard variable names, that every process making spans
 * reads: the services, the CLI and the demo MCP servers.
 */
export const TelemetryConfigSchema = z.object({
  OTEL_SERVICE_NAME: z
    .string()
    .min(1)
    .optional()
    .describe("Overrides the process's own name as `service.name` of its spans (to tell replicas apart)."),
  OTEL_TRACES_EXPORTER: z
    .enum(TracesExporter)
    .default(TracesExporter.OTLP)
    .describe(
      "Where finished spans go. Spans are made whatever it says, so trace ids flow across hops and into logs.",
    ),
  OTEL_EXPORTER_OTLP_ENDPOINT: z
    .url()
    .default("http://localhost:4318")
    .describe("Base URL of an OTLP/HTTP receiver; traces go to `<endpoint>/v1/traces` as JSON."),
  OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: z
    .url()
    .optional()
    .describe("Full URL for traces, when it is not `<OTEL_EXPORTER_OTLP_ENDPOINT>/v1/traces`."),
  OTEL_EXPORTER_JAEGER_ENDPOINT: z
    .url()
    .default("http://localhost:14268/api/traces")
    .describe("Jaeger's collector (Thrift over HTTP), for `OTEL_TRACES_EXPORTER=jaeger`."),
  OTEL_EXPORTER_OTLP_TIMEOUT: z.coerce
    .number()
    .int()
    .positive()
    .optional()
    .describe(
      "Longest one export may take, in milliseconds: 10000 unset, 500 for the CLI, so a missing collector never slows a command.",
    ),
  OTEL_TRACES_SAMPLER: z
    .enum(Sampler)
    .default(Sampler.PARENT_BASED_ALWAYS_ON)
    .describe(
      "Which traces are sampled, as the OpenTelemetry specification names the samplers. With a parent-based one (or `always_off`), nothing is made for an unsampled trace but its trace id, which still reaches logs and audit records.",
    ),
  OTEL_TRACES_SAMPLER_ARG: z.coerce
    .number()
    .min(0)
    .max(1)
    .default(1)
    .describe("The ratio for the `traceidratio` samplers, 0 to 1."),
  OTEL_BSP_SCHEDULE_DELAY: z.coerce
    .number()
    .int()
    .positive()
    .default(5_000)
    .describe("Milliseconds between two exports of finished spans."),
  LOOM_TRACE_STREAM: flag
    .prefault("true")
    .describe("Also publish finished spans to the `LOOM_SPANS` stream, which `loom runs trace` reads."),
});
/** A TCP port to listen on; 0 picks a free one; unset, the service's default. */
/** `VAR=` in an environment means "not set", as shells and compose files write it. */
export const unsetWhenEmpty = <T extends z.ZodType>(schema: T) =>
  z.preprocess((value) => (value === "" ? undefined : value), schema);

/** A comma-separated list: items trimmed, empty ones dropped. */
export const commaList = (fallback: string) =>
  z
    .string()
    .default(fallback)
    .transform((list) =>
      list
        .split(",")
        .map((item) => item.trim())
        .filter((item) => item !== ""),
    );

/** A comma-separated list whose every entry `problemOf` accepts, or start-up fails naming the entry. */
export const checkedList = (fallback: string, problemOf: (entry: string) => string | undefined) =>
  commaList(fallback).superRefine((entries, context) => {
    for (const entry of entries) {
      const problem = problemOf(entry);
      if (problem !== undefined) context.addIssue({ code: "custom", message: problem });
    }
  });

export const PortSchema = z.coerce.number().int().min(0).max(65_535).optional();

/** Where the NATS server(s) are: the services and the CLI read it alike. */
export const NatsUrlSchema = z
  .string()
  .default("nats://127.0.0.1:4222")
  .describe(
    "NATS server(s), comma-separated; credentials in the URL (`nats://user:pass@host:4222`) are taken out before it is used or logged.",
  );

export type TelemetryConfig = z.infer<typeof TelemetryConfigSchema>;

/** Settings every service reads; each service's config extends this schema. */
export const BaseConfigSchema = TelemetryConfigSchema.extend({
  NATS_URL: NatsUrlSchema,
  LOOM_NATS_PASSWORD_FILE: unsetWhenEmpty(z.string().min(1).optional()).describe(
    "An env file holding the service's NATS password (a `LOOM_NATS_<USER>_PASSWORD=…` line, as `loom nats passwords` writes alone into `.loom/nats-users/<user>/nats-password.env`, or all users' in `.loom/nats-users.env`): the service connects as its own NATS user with its password from it, unless NATS_URL names a user. docker-compose sets it to the service's own file.",
  ),
  LOG_LEVEL: z
    .enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"])
    .default("info")
    .describe("Least severe log level written."),
  LOG_FORMAT: z
    .enum(LogFormat)
    .default(LogFormat.JSON)
    .describe(
      "`json` (one object a line) or `pretty` (for a person; needs the pino-pretty dev dependency, else JSON).",
    ),
  LOOM_HTTP_PORT: PortSchema.describe(
    "Port of the HTTP server with /metrics, /healthz and /readyz; 0 picks a free one (logged). Unset: 9461 orchestrator, 9462 acp-policy, 9463 mcp-worker, 9464 llm-agent, or a free one when that is taken; a port you set must be free.",
  ),
  LOOM_HTTP_HOST: z
    .string()
    .min(1)
    .default("127.0.0.1")
    .describe(
      "Address every HTTP listener of the service binds: /metrics, /healthz and /readyz, and the orchestrator's A2A edge, MCP gateway and console. Loopback unless told; `0.0.0.0` listens on every interface (docker-compose sets it).",
    ),
  LOOM_HTTP_ALLOWED_HOSTS: checkedList("", hostEntryProblem)
    .transform((hosts) => hosts.map((host) => host.toLowerCase()))
    .describe(
      "Host names, comma-separated, that every HTTP listener of the service answers to besides `localhost`, `127.0.0.1`, `[::1]`, any address written as digits and (orchestrator) the host of `LOOM_A2A_PUBLIC_URL`, on any port. A request whose `Host` header names another is refused with 421 `HOST_NOT_ALLOWED`, whatever its path: a web page on a name its owner points at this machine (DNS rebinding) reaches nothing. docker-compose adds the service names.",
    ),
  LOOM_HTTP_ALLOWED_ORIGINS: checkedList(LOOPBACK_ORIGINS.join(","), originEntryProblem).describe(
    "Browser origins (`scheme://host[:port]`), comma-separated, whose pages may call the service's HTTP listeners (the console's API, A2A, the MCP gateway, /metrics); an origin without a port allows any port; setting it replaces the loopback default. A page served by the listener itself (its `Origin` names the request's own host) and (orchestrator) the origin of `LOOM_A2A_PUBLIC_URL` always may. Any other `Origin` gets 403 `ORIGIN_NOT_ALLOWED`; requests with none (clients that are not browsers) pass. Replaces `LOOM_MCP_ALLOWED_ORIGINS`.",
  ),
  LOOM_STREAM_REPLICAS: z
    .union([z.literal("auto"), z.coerce.number().int().min(1).max(5)])
    .default("auto")
    .transform((value) => (value === "auto" ? undefined : value))
    .describe(
      "Replicas of every stream and KV bucket (1 to 5). `auto`: 3 when the cluster has at least three servers, else 1. Existing streams and buckets are moved to it at start.",
    ),
});
export type BaseConfig = z.infer<typeof BaseConfigSchema>;
