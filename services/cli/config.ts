import { resolve } from "node:path";
import { z } from "zod";
import { NATS_PASSWORD_VARIABLES, type NatsPasswordVariable } from "../../schemas/nats-users.ts";
import { LogFormat, loadConfig, TelemetryConfigSchema } from "../kit/index.ts";

/** `LOOM_NATS_<USER>_PASSWORD`: a user's password for a NATS that runs infra/nats/nats-server.conf. */
const natsPasswordVariables = Object.fromEntries(
  Object.values(NATS_PASSWORD_VARIABLES).map((variable) => [variable, z.string().min(1).optional()]),
) as Record<NatsPasswordVariable, z.ZodOptional<z.ZodString>>;

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
  /** Local data dir (gitignored): the dev signing key, and the NATS users' passwords of `npm start`. */
  LOOM_DATA_DIR: z.string().default(resolve(import.meta.dirname, "../../.loom")),
  /** `loom dev`: the port of the local NATS it looks for, and starts when there is none. */
  LOOM_DEV_NATS_PORT: z.coerce.number().int().min(1).max(65_535).default(4222),
}).extend(natsPasswordVariables);
export type CliConfig = z.infer<typeof CliConfigSchema>;

export function readCliConfig(env: NodeJS.ProcessEnv = process.env): CliConfig {
  return loadConfig(CliConfigSchema, env);
}

/** The NATS passwords the environment gives, by variable. */
export function natsPasswordsOf(config: CliConfig): Partial<Record<string, string>> {
  return Object.fromEntries(
    Object.values(NATS_PASSWORD_VARIABLES).map((variable) => [variable, config[variable]]),
  );
}
