import type { z } from "zod";
import { ErrorCode } from "../../schemas/errors.ts";
import { describeIssues, LoomError } from "./errors.ts";

/** Settings that were renamed, by their old name: one still set fails the start rather than being ignored. */
const RENAMED_SETTINGS: Readonly<Record<string, string>> = {
  LOOM_MCP_ALLOWED_ORIGINS: "LOOM_HTTP_ALLOWED_ORIGINS (it now guards every HTTP listener, not only /mcp)",
};

/**
 * Reads a service's settings from the environment once, at the edge. Everything downstream takes
 * the parsed options object, never `process.env`.
 */
export function loadConfig<Schema extends z.ZodType>(
  schema: Schema,
  env: NodeJS.ProcessEnv = process.env,
): z.infer<Schema> {
  for (const [old, renamed] of Object.entries(RENAMED_SETTINGS)) {
    if (env[old] !== undefined)
      throw new LoomError(ErrorCode.CONFIG_INVALID, `invalid configuration: ${old} was renamed ${renamed}`);
  }
  const parsed = schema.safeParse(env);
  if (!parsed.success) {
    throw new LoomError(
      ErrorCode.CONFIG_INVALID,
      `invalid configuration: ${describeIssues(parsed.error.issues)}`,
    );
  }
  return parsed.data;
}
