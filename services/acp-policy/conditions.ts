import { type CelInput, celEnv, isCelError, parse, plan } from "@bufbuild/cel";
import { ErrorCode } from "../../schemas/errors.ts";
import { LoomError } from "../kit/index.ts";

type Program = ReturnType<typeof plan>;

const env = celEnv();
const programs = new Map<string, Program>();

/** Compiles a CEL condition once; a syntax error is a CONFIG_INVALID naming the rule. */
export function compileCondition(expression: string, rule: string): Program {
  let program = programs.get(expression);
  if (program === undefined) {
    try {
      program = plan(env, parse(expression));
    } catch (cause) {
      throw new LoomError(
        ErrorCode.CONFIG_INVALID,
        `rule "${rule}": condition is not valid CEL: ${cause instanceof Error ? cause.message : String(cause)}`,
        { cause },
      );
    }
    programs.set(expression, program);
  }
  return program;
}

/**
 * Evaluates a condition. CEL always terminates; a condition that errors (a missing field, a type
 * mismatch) or yields anything but `true` does not hold, and the caller decides what that means.
 */
export function conditionHolds(
  expression: string,
  rule: string,
  bindings: Record<string, CelInput>,
): { holds: boolean; error?: string } {
  const result = compileCondition(expression, rule)(bindings);
  if (isCelError(result)) return { holds: false, error: result.message };
  return { holds: result === true };
}
