import jsonata from "jsonata";
import { ErrorCode } from "../../schemas/errors.ts";
import { EXPRESSION_PATTERN, type Workflow } from "../../schemas/workflow.ts";
import { didYouMean, jsonBytes, LoomError, limitExceeded } from "../kit/index.ts";
import { BOUNDED_FUNCTIONS, BUDGET_BINDING } from "./bounded-functions.ts";
import { ExpressionBudget, type ExpressionLimits } from "./expression-budget.ts";
import { LinearRegExp } from "./linear-regex.ts";

export { DEFAULT_EXPRESSION_LIMITS, type ExpressionLimits } from "./expression-budget.ts";

/** What an expression can see: `$input` (the run input) and `$steps` (results by step id). */
export interface ExpressionScope {
  input: Record<string, unknown>;
  steps: Record<string, unknown>;
  /** Earlier runs of the same A2A context, oldest first (`$memory`). */
  memory?: unknown[];
  /** The bounds every evaluation in this scope runs within. */
  limits: ExpressionLimits;
}

/** JSONata's own error codes for its guard rails, by the setting that sets each. */
const LIMIT_CODES: Record<
  string,
  { limit: string; what: string; max: (limits: ExpressionLimits) => number }
> = {
  D1011: { limit: "LOOM_EXPRESSION_MAX_DEPTH", what: "evaluation depth", max: (l) => l.maxDepth },
  D2014: { limit: "LOOM_EXPRESSION_MAX_SEQUENCE", what: "range size", max: (l) => l.maxSequence },
  D2015: { limit: "LOOM_EXPRESSION_MAX_SEQUENCE", what: "sequence length", max: (l) => l.maxSequence },
};

type Compiled = ReturnType<typeof jsonata>;
/** A JSONata frame; `base` is the frame of the evaluation itself, where its bindings are. */
type Environment = { lookup(name: string): unknown; base: { lookup(name: string): unknown } };
type JsonataNode = Parameters<ExpressionBudget["exit"]>[0];
/** JSONata's hooks around each evaluation step (what its own test suite times expressions with). */
const EVALUATE_ENTRY = Symbol.for("jsonata.__evaluate_entry");
const EVALUATE_EXIT = Symbol.for("jsonata.__evaluate_exit");
const CACHE_SIZE = 1_024;
const cache = new Map<string, Compiled>();

function compile(source: string, where: string, limits?: ExpressionLimits): Compiled {
  const key = limits === undefined ? source : `${limits.maxDepth}:${limits.maxSequence}:${source}`;
  let compiled = cache.get(key);
  if (compiled === undefined) {
    try {
      compiled = jsonata(
        source,
        limits === undefined
          ? undefined
          : {
              stack: limits.maxDepth,
              sequence: limits.maxSequence,
              RegexEngine: LinearRegExp as unknown as RegExpConstructor,
            },
      );
    } catch (cause) {
      throw new LoomError(ErrorCode.INVALID_WORKFLOW, `${where}: invalid JSONata: ${jsonataMessage(cause)}`, {
        cause,
      });
    }
    if (limits !== undefined) bound(compiled);
    // Inline workflows bring expressions of their own: the cache keeps the most recent ones only.
    if (cache.size >= CACHE_SIZE) cache.delete(cache.keys().next().value as string);
    cache.set(key, compiled);
  }
  return compiled;
}

/**
 * Puts a compiled expression under the budget of whichever evaluation runs it: JSONata calls its
 * entry and exit hooks around every evaluation step, and the bounded built-ins replace its own.
 */
function bound(compiled: Compiled): void {
  const budgetIn = (environment: Environment) => environment.base.lookup(BUDGET_BINDING) as ExpressionBudget;
  compiled.assign(
    EVALUATE_ENTRY as unknown as string,
    (_node: unknown, _input: unknown, environment: Environment) => budgetIn(environment).enter(),
  );
  compiled.assign(
    EVALUATE_EXIT as unknown as string,
    (node: JsonataNode, _input: unknown, environment: Environment, value: unknown) =>
      budgetIn(environment).exit(node, value),
  );
  for (const { name, implementation, signature } of BOUNDED_FUNCTIONS) {
    compiled.registerFunction(name, implementation as never, signature);
  }
}

/**
 * Compiles every `{% %}` expression of a definition, so a typo is refused before any run starts,
 * and refuses a `$steps.<name>` that names no step (by id or `as`) of the workflow.
 */
export function checkExpressions(workflow: Workflow): void {
  const names = stepNames(workflow);
  const check = (source: string, where: string) => {
    const ast = compile(source, where).ast();
    for (const pattern of regexLiterals(ast)) assertLinear(pattern, where);
    for (const name of stepReferences(ast)) {
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

/** The regular expression literals of a JSONata syntax tree. */
function regexLiterals(node: unknown): RegExp[] {
  if (Array.isArray(node)) return node.flatMap(regexLiterals);
  if (!isPlainObject(node)) return [];
  const own = node.type === "regex" && node.value instanceof RegExp ? [node.value] : [];
  return [...own, ...Object.values(node).flatMap(regexLiterals)];
}

/** Refuses, when the definition is checked, a regular expression evaluation would refuse later. */
function assertLinear(pattern: RegExp, where: string): void {
  try {
    new LinearRegExp(pattern);
  } catch (cause) {
    throw new LoomError(ErrorCode.INVALID_WORKFLOW, `${where}: ${jsonataMessage(cause)}`, { cause });
  }
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

/**
 * Evaluates every `{% %}` expression inside `value` (deeply); other values are returned as they
 * are. All of them share one budget (time, built values), so a field cannot multiply its limits by
 * holding many expressions; they run one after another, as they do no I/O.
 */
export function renderValue(value: unknown, scope: ExpressionScope, where: string): Promise<unknown> {
  return render(value, scope, new ExpressionBudget(scope.limits, where), where);
}

async function render(
  value: unknown,
  scope: ExpressionScope,
  budget: ExpressionBudget,
  where: string,
): Promise<unknown> {
  if (typeof value === "string") {
    const whole = EXPRESSION_PATTERN.exec(value);
    if (whole !== null) return evaluate(whole[1] ?? "", scope, budget, where);
    if (!EMBEDDED_EXPRESSION.test(value)) return value;
    // Text with expressions inside it is a template: each is rendered in place, as text.
    let text = "";
    for (const piece of value.split(EMBEDDED_EXPRESSION_SPLIT)) {
      const embedded = EXPRESSION_PATTERN.exec(piece);
      if (embedded === null) {
        text += piece;
        continue;
      }
      const rendered = await evaluate(embedded[1] ?? "", scope, budget, where);
      text += typeof rendered === "string" ? rendered : JSON.stringify(rendered ?? null);
    }
    return text;
  }
  if (Array.isArray(value)) {
    const items: unknown[] = [];
    for (const [index, item] of value.entries())
      items.push(await render(item, scope, budget, `${where}[${index}]`));
    return items;
  }
  if (isPlainObject(value)) {
    const entries: [string, unknown][] = [];
    for (const [key, item] of Object.entries(value)) {
      entries.push([key, await render(item, scope, budget, `${where}.${key}`)]);
    }
    return Object.fromEntries(entries);
  }
  return value;
}

async function evaluate(
  source: string,
  scope: ExpressionScope,
  budget: ExpressionBudget,
  where: string,
): Promise<unknown> {
  let result: unknown;
  try {
    result = await compile(source, where, scope.limits).evaluate(
      {},
      { input: scope.input, steps: scope.steps, memory: scope.memory ?? [], [BUDGET_BINDING]: budget },
    );
  } catch (cause) {
    if (budget.exceeded !== undefined) throw budget.exceeded;
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
  // `$eval` wraps what went wrong inside it (D3121): a limit it met is still that limit.
  if (code === "D3121" && typeof cause === "object" && cause !== null && "error" in cause) {
    return limitError(cause.error, limits, where);
  }
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
