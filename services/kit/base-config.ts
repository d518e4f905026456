import { z } from "zod";
import { TracesExporter } from "./telemetry.ts";

/** Settings every service reads; each service's config extends this schema. */
export const BaseConfigSchema = z.object({
  NATS_URL: z.string().default("nats://127.0.0.1:4222"),
  LOG_LEVEL: z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).default("info"),
  OTEL_TRACES_EXPORTER: z.enum(TracesExporter).default(TracesExporter.NONE),
});
