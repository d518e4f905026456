import { z } from "zod";
import { loadConfig } from "../kit/index.ts";

export const CliConfigSchema = z.object({
  NATS_URL: z.string().default("nats://127.0.0.1:4222"),
  /** Bearer token presented with submissions; `loom token issue` makes one for development. */
  LOOM_TOKEN: z.string().optional(),
});
export type CliConfig = z.infer<typeof CliConfigSchema>;

export function readCliConfig(env: NodeJS.ProcessEnv = process.env): CliConfig {
  return loadConfig(CliConfigSchema, env);
}
