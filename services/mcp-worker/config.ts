import { resolve } from "node:path";
import { z } from "zod";
import { BaseConfigSchema, loadConfig } from "../kit/index.ts";

const REPO_ROOT = resolve(import.meta.dirname, "../..");

export const WorkerConfigSchema = BaseConfigSchema.extend({
  /** YAML file listing the MCP servers this worker connects to. */
  LOOM_MCP_SERVERS: z.string().default(resolve(REPO_ROOT, "infra/mcp-servers.yaml")),
  /** Least severe log level asked of MCP servers that log (`logging/setLevel`). */
  LOOM_MCP_LOG_LEVEL: z
    .enum(["debug", "info", "notice", "warning", "error", "critical", "alert", "emergency"])
    .default("info"),
});
export type WorkerConfig = z.infer<typeof WorkerConfigSchema>;

export function readWorkerConfig(env: NodeJS.ProcessEnv = process.env): WorkerConfig {
  return loadConfig(WorkerConfigSchema, env);
}

/**
 * The secret a server's `auth` block names (`tokenEnv`, `clientSecretEnv`): the YAML holds the
 * variable's name, the worker's environment its value.
 */
export function readSecret(name: string, env: NodeJS.ProcessEnv = process.env): string | undefined {
  const value = env[name];
  return value === undefined || value === "" ? undefined : value;
}
