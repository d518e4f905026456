import { z } from "zod";
import { LogFormat, loadConfig, NatsUrlSchema, PortSchema, TelemetryConfigSchema } from "../kit/index.ts";

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
    .optional()
    .describe(
      "Jaeger's UI (for example `http://localhost:16686`); `loom runs trace` then prints the trace's URL.",
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
});
export type CliConfig = z.infer<typeof CliConfigSchema>;

export function readCliConfig(env: NodeJS.ProcessEnv = process.env): CliConfig {
  return loadConfig(CliConfigSchema, env);
}
