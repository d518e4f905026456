import { resolve } from "node:path";
import { z } from "zod";
import { BaseConfigSchema, loadConfig } from "../kit/index.ts";

const REPO_ROOT = resolve(import.meta.dirname, "../..");

export const WorkerConfigSchema = BaseConfigSchema.extend({
  LOOM_MCP_SERVERS: z
    .string()
    .default(resolve(REPO_ROOT, "infra/mcp-servers.yaml"))
    .describe("YAML file listing the MCP servers this worker connects to (see docs/mcp.md)."),
  LOOM_MCP_LOG_LEVEL: z
    .enum(["debug", "info", "notice", "warning", "error", "critical", "alert", "emergency"])
    .default("info")
    .describe("Least severe log level asked of MCP servers that log (`logging/setLevel`)."),
  NODE_COMPILE_CACHE: z
    .string()
    .min(1)
    .optional()
    .describe(
      "Node's compile cache directory (the launchers set it, see docs/deployment.md); stdio MCP servers get it too, so a Node server starts on cached code.",
    ),
  LOOM_POLICY_TIMEOUT_MS: z.coerce
    .number()
    .int()
    .positive()
    .default(5_000)
    .describe("Longest a policy decision on a server's sampling request may take, in milliseconds."),
  LOOM_SAMPLING_TIMEOUT_MS: z.coerce
    .number()
    .int()
    .positive()
    .default(60_000)
    .describe("Longest the llm agent may take to answer a server's sampling request, in milliseconds."),
  LOOM_ELICITATION_TIMEOUT_MS: z.coerce
    .number()
    .int()
    .positive()
    .default(600_000)
    .describe(
      "Longest Loom waits for someone to answer a server's question (elicitation; the server then gets `cancel`), and the most a tool call may run beyond its own timeout while people answer, in milliseconds.",
    ),
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
