import { z } from "zod";
import { LogFormat, loadConfig, TelemetryConfigSchema } from "../kit/index.ts";

export const CliConfigSchema = TelemetryConfigSchema.extend({
  NATS_URL: z.string().default("nats://127.0.0.1:4222"),
  /** Bearer token presented with submissions; `loom token issue` makes one for development. */
  LOOM_TOKEN: z.string().optional(),
  /** Jaeger's web UI; `loom runs trace` prints the URL that opens the run's trace there. */
  LOOM_JAEGER_UI: z.url().default("http://localhost:16686"),
  /** Where Loom's A2A edge answers, for `loom agents card`. */
  LOOM_A2A_URL: z.url().default("http://127.0.0.1:7410"),
  /** Log format of the services `loom dev` (`npm start`) starts: pretty by default, for a person. */
  LOG_FORMAT: z.enum(LogFormat).default(LogFormat.PRETTY),
});
export type CliConfig = z.infer<typeof CliConfigSchema>;

export function readCliConfig(env: NodeJS.ProcessEnv = process.env): CliConfig {
  return loadConfig(CliConfigSchema, env);
}
