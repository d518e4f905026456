import { resolve } from "node:path";
import { z } from "zod";
import { BaseConfigSchema, loadConfig } from "../kit/index.ts";

const REPO_ROOT = resolve(import.meta.dirname, "../..");

export const WorkerConfigSchema = BaseConfigSchema.extend({
  /** YAML file listing the MCP servers this worker connects to. */
  LOOM_MCP_SERVERS: z.string().default(resolve(REPO_ROOT, "infra/mcp-servers.yaml")),
});
export type WorkerConfig = z.infer<typeof WorkerConfigSchema>;

export function readWorkerConfig(env: NodeJS.ProcessEnv = process.env): WorkerConfig {
  return loadConfig(WorkerConfigSchema, env);
}
