import jsonata from "jsonata";
import { ErrorCode } from "../../schemas/errors.ts";
import { EXPRESSION_PATTERN, type Workflow } from "../../schemas/workflow.ts";
import { didYouMean, jsonBytes, LoomError, limitExceeded } from "../kit/index.ts";

/** What an expression can see: `$input` (the run input) and `$steps` (results by step id). */
export interface ExpressionScope {
  input: Record<string, unknown>;
  steps: Record<string, unknown>;
  /** Earlier runs of the same A2A context, oldest first (`$memory`). */
  memory?: unknown[];
  /** The bounds every evaluation in this scope runs within. */
  limits: ExpressionLimits;
}

/**
 * Bounds on one expression's evaluation: expressions come from callers (inline workflows), and
 * one that runs long holds up every run of the orchestrator.
 */
export interface ExpressionLimits {
  timeoutMs: number;
  /** Evaluation depth; a recursive function adds to it with each call. */
  maxDepth: number;
  /** Items in any one sequence, a range (`[1..n]`) included. */
  maxSequence: number;
  /** JSON bytes of what one expression returns (it goes into tool arguments and run records), and of a run's output. */
  maxResultBytes: number;
}

export const DEFAULT_EXPRESSION_LIMITS: ExpressionLimits = {
  timeoutMs: 500,
  maxDepth: 500,
  maxSequence: 100_000,
  maxResultBytes: 256 * 1024,
};

/** JSONata's own error codes for its guard rails, by the setting that sets each. */
const LIMIT_CODES: Record<
  string,
  { limit: string; what: string; max: (limits: ExpressionLimits) => number }
> = {
  D1011: { limit: "LOOM_EXPRESSION_MAX_DEPTH", what: "evaluation depth", max: (l) => l.maxDepth },
  D1012: { limit: "LOOM_EXPRESSION_TIMEOUT_MS", what: "evaluation time (ms)", max: (l) => l.timeoutMs },
  D2014: { limit: "LOOM_EXPRESSION_MAX_SEQUENCE", what: "range size", max: (l) => l.maxSequence },
  D2015: { limit: "LOOM_EXPRESSION_MAX_SEQUENCE", what: "sequence length", max: (l) => l.maxSequence },
};

type Compiled = ReturnType<typeof jsonata>;
const CACHE_SIZE = 1_024;
const cache = new Map<string, Compiled>();

function compile(source: string, where: string, limits?: ExpressionLimits): Compiled {
  const key =
    limits === undefined ? source : `${limits.timeoutMs}:${limits.maxDepth}:${limits.maxSequence}:${source}`;
  let compiled = cache.get(key);
  if (compiled === undefined) {
    try {
      compiled = jsonata(
        source,
        limits === undefined
          ? undefined
          : { timeout: limits.timeoutMs, stack: limits.maxDepth, sequence: limits.maxSequence },
      );
    } catch (cause) {
      throw new LoomError(ErrorCode.INVALID_WORKFLOW, `${where}: invalid JSONata: ${jsonataMessage(cause)}`, {
        cause,
      });
    }
    // Inline workflows bring expressions of their own: the cache keeps the most recent ones only.
    if (cache.size >= CACHE_SIZE) cache.delete(cache.keys().next().value as string);
    cache.set(key, compiled);
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

const readsMemoryCache = new WeakMap<Workflow, boolean>();

/**
 * Whether any expression of the workflow can see `$memory`: one names it, or calls `$eval`, which
 * evaluates a string in the caller's bindings. A run of a workflow that cannot see it never
 * reads its context's memory.
 */
export function readsMemory(workflow: Workflow): boolean {
  let reads = readsMemoryCache.get(workflow);
  if (reads === undefined) {
    let found = false;
    const check = (source: string, where: string) => {
      found ||= variableNames(compile(source, where).ast()).some(
        (name) => name === "memory" || name === "eval",
      );
    };
    visitExpressions(workflow.steps, "steps", check);
    visitExpressions(workflow.output, "output", check);
    reads = found;
    readsMemoryCache.set(workflow, reads);
  }
  return reads;
}

/** Every `$name` a JSONata syntax tree refers to (functions called by name included). */
function variableNames(node: unknown): string[] {
  if (Array.isArray(node)) return node.flatMap(variableNames);
  if (!isPlainObject(node)) return [];
  const own = node.type === "variable" && typeof node.value === "string" ? [node.value] : [];
  return [...own, ...Object.values(node).flatMap(variableNames)];
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

/**
 * JSONata's `$pad`, refusing a width over the result limit before it builds the string: the time
 * limit is checked between evaluation steps, never inside one native call, so
 * `$pad('', 400000000)` would otherwise run for seconds and take gigabytes first.
 */
function boundedPad(limits: ExpressionLimits, where: string) {
  return (text: string | undefined, width: number, padding = " "): string | undefined => {
    if (text === undefined) return undefined;
    if (Math.abs(width) > limits.maxResultBytes) {
      throw limitExceeded(
        `${where}: $pad's width`,
        "LOOM_EXPRESSION_MAX_RESULT_BYTES",
        Math.abs(width),
        limits.maxResultBytes,
      );
    }
    const missing = Math.abs(width) - Array.from(text).length;
    if (missing <= 0 || padding === "") return text;
    const fill = Array.from(padding.repeat(Math.ceil(missing / Array.from(padding).length)))
      .slice(0, missing)
      .join("");
    return width > 0 ? text + fill : fill + text;
  };
}

async function evaluate(source: string, scope: ExpressionScope, where: string): Promise<unknown> {
  let result: unknown;
  try {
    result = await compile(source, where, scope.limits).evaluate(
      {},
      {
        input: scope.input,
        steps: scope.steps,
        memory: scope.memory ?? [],
        pad: boundedPad(scope.limits, where),
      },
    );
  } catch (cause) {
    if (cause instanceof LoomError) throw cause;
    throw (
      limitError(cause, scope.limits, where) ??
      new LoomError(ErrorCode.EXPRESSION_FAILED, `${where}: ${jsonataMessage(cause)}`, { cause })
    );
  }
  const bytes = jsonBytes(result);
  if (bytes > scope.limits.maxResultBytes) {
    throw limitExceeded(
      `${where}: the expression's result (JSON bytes)`,
      "LOOM_EXPRESSION_MAX_RESULT_BYTES",
      bytes,
      scope.limits.maxResultBytes,
    );
  }
  return result;
}

/** A JSONata guard-rail error as LIMIT_EXCEEDED, naming the setting; undefined for other errors. */
function limitError(cause: unknown, limits: ExpressionLimits, where: string): LoomError | undefined {
  const code = typeof cause === "object" && cause !== null && "code" in cause ? String(cause.code) : "";
  const known = LIMIT_CODES[code];
  if (known === undefined) return undefined;
  const max = known.max(limits);
  return new LoomError(
    ErrorCode.LIMIT_EXCEEDED,
    `${where}: the expression went over its ${known.what} limit of ${max} (${known.limit})`,
    { cause, details: { limit: known.limit, max } },
  );
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
