import jsonata from "jsonata";
import { ErrorCode } from "../../schemas/errors.ts";
import { EXPRESSION_PATTERN, type Workflow } from "../../schemas/workflow.ts";
import { didYouMean, LoomError } from "../kit/index.ts";

/** What an expression can see: `$input` (the run input) and `$steps` (results by step id). */
export interface ExpressionScope {
  input: Record<string, unknown>;
  steps: Record<string, unknown>;
  /** Earlier runs of the same A2A context, oldest first (`$memory`). */
  memory?: unknown[];
}

type Compiled = ReturnType<typeof jsonata>;
const CACHE_SIZE = 1_024;
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
    // Inline workflows bring expressions of their own: the cache keeps the most recent ones only.
    if (cache.size >= CACHE_SIZE) cache.delete(cache.keys().next().value as string);
    cache.set(source, compiled);
  }
  return compiled;
}

/**
 * Compiles every `{% %}` expression of a definition, so a typo is refused before any run starts,
 * and refuses a `$steps.<name>` that names no step (by id or `as`) of the workflow.
 */
export function checkExpressions(workflow: Workflow): void {
  const names = stepNames(workflow);
  const check = (source: string, where: string) => {
    for (const name of stepReferences(compile(source, where).ast())) {
      if (names.has(name)) continue;
      throw new LoomError(
        ErrorCode.INVALID_WORKFLOW,
        `${where}: $steps.${name} names no step of workflow ${workflow.id}${didYouMean(name, names)}; its steps are ${[...names].join(", ")}`,
      );
    }
  };
  workflow.steps.forEach((step, index) => {
    const { id, ...fields } = step;
    visitExpressions(fields, `steps[${index}] (${id})`, check);
  });
  visitExpressions(workflow.output, "output", check);
}

/** Every name a step's result is known by in `$steps`: its id and its `as`, nested steps included. */
function stepNames(workflow: Workflow): Set<string> {
  const names = new Set<string>();
  const add = (step: { id: string; as?: string | undefined }) => {
    names.add(step.id);
    if (step.as !== undefined) names.add(step.as);
  };
  for (const step of workflow.steps) {
    add(step);
    if ("parallel" in step) step.parallel.forEach(add);
    if ("onError" in step && step.onError !== undefined) step.onError.steps.forEach(add);
  }
  return names;
}

/** The names that `$steps.<name>` paths in a JSONata syntax tree look up. */
function stepReferences(node: unknown): string[] {
  if (Array.isArray(node)) return node.flatMap(stepReferences);
  if (!isPlainObject(node)) return [];
  const [first, second] = Array.isArray(node.steps) ? (node.steps as unknown[]) : [];
  const own =
    node.type === "path" &&
    isPlainObject(first) &&
    first.type === "variable" &&
    first.value === "steps" &&
    isPlainObject(second) &&
    second.type === "name" &&
    typeof second.value === "string"
      ? [second.value]
      : [];
  return [...own, ...Object.values(node).flatMap(stepReferences)];
}

/** Evaluates every `{% %}` expression inside `value` (deeply); other values are returned as they are. */
export async function renderValue(value: unknown, scope: ExpressionScope, where: string): Promise<unknown> {
  if (typeof value === "string") {
    const whole = EXPRESSION_PATTERN.exec(value);
    if (whole !== null) return evaluate(whole[1] ?? "", scope, where);
    if (!EMBEDDED_EXPRESSION.test(value)) return value;
    // Text with expressions inside it is a template: each is rendered in place, as text.
    const pieces = await Promise.all(
      value.split(EMBEDDED_EXPRESSION_SPLIT).map(async (piece) => {
        const embedded = EXPRESSION_PATTERN.exec(piece);
        if (embedded === null) return piece;
        const rendered = await evaluate(embedded[1] ?? "", scope, where);
        return typeof rendered === "string" ? rendered : JSON.stringify(rendered ?? null);
      }),
    );
    return pieces.join("");
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

async function evaluate(source: string, scope: ExpressionScope, where: string): Promise<unknown> {
  try {
    return await compile(source, where).evaluate(
      {},
      { input: scope.input, steps: scope.steps, memory: scope.memory ?? [] },
    );
  } catch (cause) {
    if (cause instanceof LoomError) throw cause;
    throw new LoomError(ErrorCode.EXPRESSION_FAILED, `${where}: ${jsonataMessage(cause)}`, { cause });
  }
}

const EMBEDDED_EXPRESSION = /\{%[\s\S]*?%\}/;
const EMBEDDED_EXPRESSION_SPLIT = /(\{%[\s\S]*?%\})/;

function visitExpressions(
  value: unknown,
  where: string,
  visit: (source: string, where: string) => void,
): void {
  if (typeof value === "string") {
    for (const piece of value.split(EMBEDDED_EXPRESSION_SPLIT)) {
      const match = EXPRESSION_PATTERN.exec(piece);
      if (match !== null) visit(match[1] ?? "", where);
    }
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
