import { resolve } from "node:path";
import { z } from "zod";
import { NATS_PASSWORD_VARIABLES, type NatsPasswordVariable } from "../../schemas/nats-users.ts";
import { LogFormat, loadConfig, NatsUrlSchema, PortSchema, TelemetryConfigSchema } from "../kit/index.ts";

/** `LOOM_NATS_<USER>_PASSWORD`: a user's password for a NATS that runs infra/nats/nats-server.conf. */
const natsPasswordVariables = Object.fromEntries(
  Object.entries(NATS_PASSWORD_VARIABLES).map(([user, variable]) => [
    variable,
    z
      .string()
      .min(1)
      .optional()
      .describe(
        `Password of the NATS user \`${user}\` (infra/nats/nats-server.conf); unset, the CLI reads it from \`nats-users.env\` in LOOM_DATA_DIR, which \`npm start\` writes.`,
      ),
  ]),
) as Record<NatsPasswordVariable, z.ZodOptional<z.ZodString>>;

export const CliConfigSchema = TelemetryConfigSchema.extend({
  NATS_URL: NatsUrlSchema,
  LOOM_TOKEN: z
    .string()
    .optional()
    .describe(
      "Bearer token the CLI presents (the same as `--token`); `loom token issue` makes one for development.",
    ),
  LOOM_JAEGER_UI: z
    .url()
    .default("http://localhost:16686")
    .describe(
      "Jaeger's web UI; `loom runs trace` prints the URL that opens the run's trace there (`npm start` starts a Jaeger that serves it).",
    ),
  LOOM_A2A_URL: z
    .url()
    .default("http://127.0.0.1:7410")
    .describe("Where Loom's A2A edge answers, for `loom agents card`."),
  LOOM_A2A_PORT: PortSchema.describe(
    "For `loom dev` (`npm start`): the port of the A2A edge and MCP gateway it starts; unset, 7410 or a free one when that is taken.",
  ),
  LOOM_MCP_SERVERS: z
    .string()
    .optional()
    .describe(
      "For `loom dev` (`npm start`): your own MCP server list, passed to the mcp-worker; the demo run is skipped, since it needs the demo servers.",
    ),
  LOG_FORMAT: z
    .enum(LogFormat)
    .default(LogFormat.PRETTY)
    .describe("Log format of the services `loom dev` (`npm start`) starts: pretty by default, for a person."),
  LOOM_DATA_DIR: z
    .string()
    .default(resolve(import.meta.dirname, "../../.loom"))
    .describe(
      "Local data folder (gitignored): the dev signing key, and the NATS users' passwords (`nats-users.env`) of `npm start`.",
    ),
  LOOM_DEV_NATS_PORT: z.coerce
    .number()
    .int()
    .min(1)
    .max(65_535)
    .default(4222)
    .describe(
      "For `loom dev` (`npm start`): the port of the local NATS it looks for, and starts when there is none.",
    ),
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
