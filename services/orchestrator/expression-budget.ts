import { setImmediate as nextTurn } from "node:timers/promises";
import { ErrorCode } from "../../schemas/errors.ts";
import { LoomError } from "../kit/index.ts";

/**
 * Bounds on evaluating the expressions of one field (a step's `with`, a `when`, a prompt, a run's
 * output): expressions come from callers (inline workflows), and one that runs long or builds
 * much holds up or starves every run of the orchestrator.
 */
export interface ExpressionLimits {
  /** CPU time the evaluation of one field's expressions may take in all, in milliseconds. */
  timeoutMs: number;
  /** Evaluation depth; a recursive function adds to it with each call. */
  maxDepth: number;
  /** Items in any one sequence or array, a range (`[1..n]`) included. */
  maxSequence: number;
  /** The size of any one value an expression computes on the way: see {@link ExpressionBudget.sizeOf}. */
  maxValue: number;
  /** The sizes of every value built by a function or operator, added up over one field. */
  maxBuilt: number;
  /** JSON bytes of what one expression returns (it goes into tool arguments and run records), and of a run's output. */
  maxResultBytes: number;
}

export const DEFAULT_EXPRESSION_LIMITS: ExpressionLimits = {
  timeoutMs: 500,
  maxDepth: 500,
  maxSequence: 100_000,
  maxValue: 1024 * 1024,
  maxBuilt: 16 * 1024 * 1024,
  maxResultBytes: 256 * 1024,
};

/** How many `$eval`s may run one inside another: each is an evaluation of its own. */
export const MAX_EVAL_NESTING = 16;

/** How long evaluation may hold the event loop before it lets other runs' work go first. */
const SLICE_MS = 10;

/** JSONata's built-in functions: what a call to one returns is new, so it counts as built. */
const BUILT_INS = new Set(
  (
    "sum count max min average string substring substringBefore substringAfter lowercase uppercase " +
    "length trim pad match contains replace split join formatNumber formatBase formatInteger " +
    "parseInteger number floor ceil round abs sqrt power random boolean not map zip filter single " +
    "reduce sift keys lookup append exists spread merge reverse each error assert type sort shuffle " +
    "distinct base64encode base64decode encodeUrlComponent encodeUrl decodeUrlComponent decodeUrl " +
    "eval toMillis fromMillis clone now millis"
  ).split(" "),
);

/** A node of JSONata's syntax tree, as far as the budget looks at it. */
interface Node {
  type: string;
  procedure?: { type: string; value?: unknown };
}

/**
 * What one field's evaluation may still spend: CPU time (counted every {@link SLICE_MS}, when the
 * event loop is given back), the size of each value computed on the way, and
 * the sizes of all values built in all. JSONata calls {@link enter} and {@link exit} around every
 * step through its evaluation hooks, so a native function's result is checked as soon as it
 * returns; the functions that could build far more than they are given are replaced by bounded
 * ones (`bounded-functions.ts`).
 */
export class ExpressionBudget {
  readonly limits: ExpressionLimits;
  readonly #where: string;
  #spentMs = 0;
  #sliceStart = performance.now();
  #sliceCpu = process.threadCpuUsage();
  #built = 0;
  #evalNesting = 0;
  /** Sizes of the objects measured so far; a Map, as the budget lives for one field's evaluation. */
  #sizes: Map<object, number> | undefined;
  /** The first limit this evaluation went over: JSONata's `$eval` rewraps errors, this does not. */
  exceeded: LoomError | undefined;

  constructor(limits: ExpressionLimits, where: string) {
    this.limits = limits;
    this.#where = where;
  }

  /**
   * Before each evaluation step: once a slice of {@link SLICE_MS} is over, counts the CPU time it
   * took, refuses once the budget is spent, and gives the event loop back (a promise only then:
   * JSONata awaits whatever this returns). CPU time, not wall time: on a loaded machine the
   * process waits for a core, and that wait is not the expression's doing.
   */
  enter(): Promise<void> | undefined {
    if (performance.now() - this.#sliceStart < SLICE_MS) return undefined;
    const used = process.threadCpuUsage(this.#sliceCpu);
    this.#spentMs += (used.user + used.system) / 1_000;
    if (this.#spentMs > this.limits.timeoutMs) {
      this.fail(
        "evaluation time (ms)",
        "LOOM_EXPRESSION_TIMEOUT_MS",
        Math.round(this.#spentMs),
        this.limits.timeoutMs,
      );
    }
    return nextTurn().then(() => {
      this.#sliceStart = performance.now();
      this.#sliceCpu = process.threadCpuUsage();
    });
  }

  /** After each evaluation step: the value it produced must fit, and what it built is counted. */
  exit(node: Node, value: unknown): void {
    // Reading a variable or a field passes on a value that was measured when it was built, or
    // that came with the run (its input, step results): only what it leads to is measured.
    if (node.type === "variable" || node.type === "name") return;
    if (Array.isArray(value) && value.length > this.limits.maxSequence) {
      this.fail("sequence length", "LOOM_EXPRESSION_MAX_SEQUENCE", value.length, this.limits.maxSequence);
    }
    const size = this.sizeOf(value);
    if (size > this.limits.maxValue)
      this.fail("value size", "LOOM_EXPRESSION_MAX_VALUE", size, this.limits.maxValue);
    if (!builds(node)) return;
    this.#built += size;
    if (this.#built > this.limits.maxBuilt) {
      this.fail("built values' size", "LOOM_EXPRESSION_MAX_BUILT", this.#built, this.limits.maxBuilt);
    }
  }

  /**
   * A value's size, roughly its length as JSON: a string's characters, an array's items, an
   * object's keys (their characters) and, inside them, the sizes of what they hold. A value held
   * several times counts each time, as JSON would write it (and as `=`, `$string` or `**` walk it);
   * each object is measured once per field however often it is seen.
   */
  sizeOf(value: unknown): number {
    if (typeof value === "string") return value.length;
    if (!isComposite(value)) return 1;
    this.#sizes ??= new Map();
    const sizes = this.#sizes;
    const known = sizes.get(value);
    if (known !== undefined) return known;
    // Depth-first without recursion: a run's input may nest deeper than the call stack goes.
    const pending: object[] = [value];
    const open = new Set<object>();
    while (pending.length > 0) {
      const node = pending[pending.length - 1] as object;
      const children = Array.isArray(node) ? node : Object.values(node);
      const unknown = children.filter(
        (child): child is object => isComposite(child) && !open.has(child) && !sizes.has(child),
      );
      if (unknown.length > 0 && !open.has(node)) {
        open.add(node);
        pending.push(...unknown);
        continue;
      }
      pending.pop();
      open.delete(node);
      let size = 1;
      for (const child of children) size += this.#leafOrKnown(child);
      if (!Array.isArray(node)) for (const key of Object.keys(node)) size += key.length;
      sizes.set(node, size);
    }
    return sizes.get(value) ?? 1;
  }

  /** Refuses, naming the limit, before a function builds a value of `size`. */
  assertBuildable(what: string, size: number): void {
    if (size > this.limits.maxValue) this.fail(what, "LOOM_EXPRESSION_MAX_VALUE", size, this.limits.maxValue);
  }

  /** One `$eval` more inside another: at most {@link MAX_EVAL_NESTING} deep. */
  enterEval(): void {
    this.#evalNesting += 1;
    if (this.#evalNesting > MAX_EVAL_NESTING) {
      this.fail("$eval nesting", "MAX_EVAL_NESTING", this.#evalNesting, MAX_EVAL_NESTING);
    }
  }

  leaveEval(): void {
    this.#evalNesting -= 1;
  }

  /** Counts `size` against the built values' budget (for work a bounded function does inside itself). */
  spend(size: number): void {
    this.#built += size;
    if (this.#built > this.limits.maxBuilt) {
      this.fail("built values' size", "LOOM_EXPRESSION_MAX_BUILT", this.#built, this.limits.maxBuilt);
    }
  }

  fail(what: string, limit: string, value: number, max: number): never {
    this.exceeded = new LoomError(
      ErrorCode.LIMIT_EXCEEDED,
      `${this.#where}: the expression went over its ${what} limit of ${max} (${limit})`,
      { details: { limit, value, max } },
    );
    throw this.exceeded;
  }

  #leafOrKnown(value: unknown): number {
    if (typeof value === "string") return value.length;
    return isComposite(value) ? (this.#sizes?.get(value) ?? 1) : 1;
  }
}

/** Arrays and plain objects; JSONata's functions are objects too but are not data. */
function isComposite(value: unknown): value is object {
  if (typeof value !== "object" || value === null) return false;
  const flags = value as { _jsonata_lambda?: unknown; _jsonata_function?: unknown };
  return flags._jsonata_lambda !== true && flags._jsonata_function !== true;
}

/**
 * Whether a step builds a new value rather than pass one along: operators, array and object
 * constructors, transforms and calls of built-in functions. A call of the caller's own function
 * passes on what its body built, which was counted there.
 */
function builds(node: Node): boolean {
  switch (node.type) {
    case "binary":
    case "unary":
    case "transform":
    case "apply":
      return true;
    case "function":
    case "partial":
      return node.procedure?.type === "variable" && BUILT_INS.has(String(node.procedure.value));
    default:
      return false;
  }
}
