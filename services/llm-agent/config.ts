import { z } from "zod";
import { DurationSchema } from "../../schemas/duration.ts";
import { BaseConfigSchema, loadConfig } from "../kit/index.ts";

/** An empty variable counts as unset (compose passes `${VAR:-}` through as ""). */
const unsetIfEmpty = <Schema extends z.ZodType>(schema: Schema) =>
  z.preprocess((value) => (value === "" ? undefined : value), schema);

export const LlmAgentConfigSchema = BaseConfigSchema.extend({
  LOOM_LLM_BASE_URL: unsetIfEmpty(z.url().optional()).describe(
    "Base URL of an OpenAI-compatible Chat Completions API (for example `https://api.openai.com/v1` or a local server's `http://localhost:11434/v1`). Without it a deterministic local model answers.",
  ),
  LOOM_LLM_API_KEY: unsetIfEmpty(z.string().min(1).optional()).describe(
    "Sent as `Authorization: Bearer <key>` to that API; some local servers need none.",
  ),
  LOOM_LLM_MODEL: z
    .string()
    .min(1)
    .default("gpt-4o-mini")
    .describe(
      "The model every completion asks the provider for (servers' model hints are advisory: one model is offered).",
    ),
  LOOM_LLM_TIMEOUT: DurationSchema.prefault("60s").describe("Longest one completion may take."),
});
export type LlmAgentConfig = z.infer<typeof LlmAgentConfigSchema>;

export function readLlmAgentConfig(env: NodeJS.ProcessEnv = process.env): LlmAgentConfig {
  return loadConfig(LlmAgentConfigSchema, env);
}
