import type { z } from "zod";
import { ErrorCode } from "../../schemas/errors.ts";
import { describeIssues, LoomError } from "./errors.ts";

/**
 * Reads a service's settings from the environment once, at the edge. Everything downstream takes
 * the parsed options object, never `process.env`.
 */
export function loadConfig<Schema extends z.ZodType>(
  schema: Schema,
  env: NodeJS.ProcessEnv = process.env,
): z.infer<Schema> {
  const parsed = schema.safeParse(env);
  if (!parsed.success) {
    throw new LoomError(
      ErrorCode.CONFIG_INVALID,
      `invalid configuration: ${describeIssues(parsed.error.issues)}`,
    );
  }
  return parsed.data;
}
