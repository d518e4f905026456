import jsonata from "jsonata";
import { ErrorCode } from "../../schemas/errors.ts";
import { EXPRESSION_PATTERN, type Workflow } from "../../schemas/workflow.ts";
import { LoomError } from "../kit/index.ts";

/** What an expression can see: `$input` (the run input) and `$steps` (results by step id). */
export interface ExpressionScope {
  input: Record<string, unknown>;
  steps: Record<string, unknown>;
}

type Compiled = ReturnType<typeof jsonata>;
const cache = new Map<string, Compiled>();

function compile(source: string, where: string): Compiled {
  let compiled = cache.get(source);
  if (compiled === undefined) {
    try {
      compiled = jsonata(source);
    } catch (cause) {
      throw new LoomError(ErrorCode.INVALID_WORKFLOW, `${where}: invalid JSONata: ${jsonataMessage(cause)}`, {
        cause,
      });
    }
    cache.set(source, compiled);
  }
  return compiled;
}

/** Compiles every `{% %}` expression of a definition, so a typo is refused before any run starts. */
export function checkExpressions(workflow: Workflow): void {
  workflow.steps.forEach((step, index) => {
    visitExpressions(step.with, `steps[${index}] (${step.id}).with`, (source, where) =>
      compile(source, where),
    );
  });
  visitExpressions(workflow.output, "output", (source, where) => compile(source, where));
}

/** Evaluates every `{% %}` expression inside `value` (deeply); other values are returned as they are. */
export async function renderValue(value: unknown, scope: ExpressionScope, where: string): Promise<unknown> {
  if (typeof value === "string") {
    const match = EXPRESSION_PATTERN.exec(value);
    if (match === null) return value;
    const source = match[1] ?? "";
    try {
      return await compile(source, where).evaluate({}, { input: scope.input, steps: scope.steps });
    } catch (cause) {
      if (cause instanceof LoomError) throw cause;
      throw new LoomError(ErrorCode.EXPRESSION_FAILED, `${where}: ${jsonataMessage(cause)}`, { cause });
    }
  }
  if (Array.isArray(value)) {
    return Promise.all(value.map((item, index) => renderValue(item, scope, `${where}[${index}]`)));
  }
  if (isPlainObject(value)) {
    const entries = await Promise.all(
      Object.entries(value).map(
        async ([key, item]) => [key, await renderValue(item, scope, `${where}.${key}`)] as const,
      ),
    );
    return Object.fromEntries(entries);
  }
  return value;
}

function visitExpressions(
  value: unknown,
  where: string,
  visit: (source: string, where: string) => void,
): void {
  if (typeof value === "string") {
    const match = EXPRESSION_PATTERN.exec(value);
    if (match !== null) visit(match[1] ?? "", where);
  } else if (Array.isArray(value)) {
    for (const [index, item] of value.entries()) visitExpressions(item, `${where}[${index}]`, visit);
  } else if (isPlainObject(value)) {
    for (const [key, item] of Object.entries(value)) visitExpressions(item, `${where}.${key}`, visit);
  }
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function jsonataMessage(error: unknown): string {
  if (typeof error === "object" && error !== null && "message" in error) {
    const position = "position" in error ? ` (at character ${String(error.position)})` : "";
    return `${String(error.message)}${position}`;
  }
  return String(error);
}
