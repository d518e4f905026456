import { resolve } from "node:path";
import { z } from "zod";
import { BaseConfigSchema, loadConfig } from "../kit/index.ts";

const REPO_ROOT = resolve(import.meta.dirname, "../..");

export const PolicyServiceConfigSchema = BaseConfigSchema.extend({
  /** Folder of policy YAML files; all files in it form the active policy. */
  LOOM_POLICY_DIR: z.string().default(resolve(REPO_ROOT, "infra/policies")),
});
export type PolicyServiceConfig = z.infer<typeof PolicyServiceConfigSchema>;

export function readPolicyServiceConfig(env: NodeJS.ProcessEnv = process.env): PolicyServiceConfig {
  return loadConfig(PolicyServiceConfigSchema, env);
}
