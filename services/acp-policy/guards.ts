import type { z } from "zod";
import type { ArgumentGuardSchema } from "../../schemas/policy.ts";

type ArgumentGuard = z.infer<typeof ArgumentGuardSchema>;

/** What a shell would treat specially: command separators, pipes, substitution, redirection. */
const SHELL_METACHARACTERS = /[;&|`$<>(){}\\\n\r]/;

const patterns = new Map<string, RegExp>();

/** The first way `args` break the guard, or undefined when they keep to it. */
export function guardViolation(
  guard: ArgumentGuard,
  args: Record<string, unknown> | undefined,
): string | undefined {
  const values = args ?? {};
  if (guard.max_bytes !== undefined) {
    const size = Buffer.byteLength(JSON.stringify(values));
    if (size > guard.max_bytes)
      return `arguments are ${size} bytes, more than the ${guard.max_bytes} allowed`;
  }
  for (const [path, text] of strings(values, "")) {
    if (guard.shell_metacharacters === true && SHELL_METACHARACTERS.test(text)) {
      return `argument ${path} contains shell metacharacters`;
    }
    for (const source of guard.patterns ?? []) {
      if (compiled(source).test(text)) return `argument ${path} matches the denied pattern /${source}/`;
    }
  }
  return undefined;
}

function compiled(source: string): RegExp {
  let regex = patterns.get(source);
  if (regex === undefined) {
    regex = new RegExp(source, "u");
    patterns.set(source, regex);
  }
  return regex;
}

/** Every string inside a value (keys too, a command can hide in either), with its path. */
function* strings(value: unknown, path: string): Generator<[string, string]> {
  if (typeof value === "string") {
    yield [path || "(value)", value];
  } else if (Array.isArray(value)) {
    for (const [index, item] of value.entries()) yield* strings(item, `${path}[${index}]`);
  } else if (value !== null && typeof value === "object") {
    for (const [key, item] of Object.entries(value)) {
      const child = path === "" ? key : `${path}.${key}`;
      yield [`${child} (key)`, key];
      yield* strings(item, child);
    }
  }
}
