import jsonata from "jsonata";
import type { ExpressionBudget } from "./expression-budget.ts";

/**
 * JSONata's built-in functions that can build far more than they are given, or take far longer,
 * in one native call that no evaluation step interrupts, replaced by versions that check first.
 * Each finds the budget of the evaluation that calls it in its environment.
 */

/** The name an evaluation's budget is bound under: a space makes it unreachable from an expression. */
export const BUDGET_BINDING = "loom budget";

/** How wide a `$fromMillis`/`$now` picture may make one component; JSONata pads with a loop. */
const MAX_PICTURE_WIDTH = 64;
/** The longest picture string of a formatting or parsing function: each is interpreted character by character. */
const MAX_PICTURE_LENGTH = 1_024;
/** The longest source `$eval` parses: parsing is one synchronous call, about 1 ms per KiB. */
const MAX_EVAL_SOURCE = 64 * 1024;

/** What JSONata passes a built-in function as `this`. */
interface Focus {
  environment: { lookup(name: string): unknown };
}

interface NativeFunction {
  implementation: (this: Focus, ...args: unknown[]) => unknown;
}

const WRAPPED = [
  "sort",
  "fromMillis",
  "toMillis",
  "eval",
  "match",
  "split",
  "replace",
  "formatNumber",
  "formatInteger",
  "parseInteger",
] as const;

/** JSONata's own implementations, which the bounded versions call once their checks pass. */
const originals = (await jsonata(`{${WRAPPED.map((name) => `'${name}': $${name}`).join(", ")}}`).evaluate(
  {},
)) as Record<(typeof WRAPPED)[number], NativeFunction>;

function budgetOf(focus: Focus): ExpressionBudget {
  return focus.environment.lookup(BUDGET_BINDING) as ExpressionBudget;
}

/** A JSONata-style error: the evaluation reports it as EXPRESSION_FAILED with its message. */
function refusal(message: string): Error {
  return Object.assign(new Error(message), { code: "LOOM0001" });
}

/** `$pad`, refusing a width over the value limit before it builds the string. */
function pad(this: Focus, text: string | undefined, width: number, padding = " "): string | undefined {
  if (text === undefined) return undefined;
  budgetOf(this).assertBuildable("$pad's width", Math.abs(width));
  const missing = Math.abs(width) - codePoints(text);
  if (missing <= 0 || padding === "") return text;
  const repeated = padding.repeat(Math.ceil(missing / codePoints(padding)));
  // JSONata counts characters as code points; a padding without surrogate pairs is one unit each.
  const fill = SURROGATE.test(padding)
    ? Array.from(repeated).slice(0, missing).join("")
    : repeated.slice(0, missing);
  return width > 0 ? text + fill : fill + text;
}

const SURROGATE = /[\uD800-\uDFFF]/;

function codePoints(text: string): number {
  return SURROGATE.test(text) ? Array.from(text).length : text.length;
}

/** `$join`, refusing a result over the value limit before it builds it (a separator repeats per item). */
function join(this: Focus, strings: string[] | undefined, separator = ""): string | undefined {
  if (strings === undefined) return undefined;
  const length =
    strings.reduce((total, item) => total + item.length, 0) +
    separator.length * Math.max(strings.length - 1, 0);
  budgetOf(this).assertBuildable("$join's result", length);
  return strings.join(separator);
}

/**
 * `$sort`. Without a function, a native sort (JSONata's own merge sort copies the rest of the
 * array at every step: n² items). With the caller's function, JSONata's sort, charged its n²/2
 * copies against the built budget before it starts.
 */
async function sort(this: Focus, items: unknown[] | undefined, comparator?: unknown): Promise<unknown> {
  if (items === undefined || items.length <= 1) return items;
  if (comparator !== undefined) {
    budgetOf(this).spend((items.length * items.length) / 2);
    return originals.sort.implementation.call(this, items, comparator);
  }
  const numbers = items.every((item) => typeof item === "number");
  if (!numbers && !items.every((item) => typeof item === "string")) {
    throw { code: "D3070", index: 1, stack: new Error().stack };
  }
  return [...(items as (number | string)[])].sort((a, b) => (a > b ? 1 : a < b ? -1 : 0));
}

/** `$distinct` in one pass (JSONata's compares each item with every one kept: n² deep comparisons). */
function distinct(this: Focus, items: unknown): unknown {
  if (!Array.isArray(items) || items.length <= 1) return items;
  const seen = new Set<unknown>();
  const kept = items.filter((item) => {
    const key = typeof item === "object" && item !== null ? canonicalJson(item) : item;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
  if ((items as { sequence?: boolean }).sequence === true) Object.assign(kept, { sequence: true });
  return kept;
}

/** JSON with every object's keys sorted, so deep-equal values (JSONata's `=`) have the same text. */
function canonicalJson(value: object): string {
  return `\u0000${JSON.stringify(value, (_key, item: unknown) =>
    typeof item === "object" && item !== null && !Array.isArray(item)
      ? Object.fromEntries(Object.entries(item).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
      : item,
  )}`;
}

/**
 * Refuses a picture longer than {@link MAX_PICTURE_LENGTH}, or a date picture component wider than
 * {@link MAX_PICTURE_WIDTH}: `[Y,40000000]` pads for seconds.
 */
function assertPicture(function_: string, picture: unknown): void {
  if (typeof picture !== "string") return;
  if (picture.length > MAX_PICTURE_LENGTH) {
    throw refusal(`${function_}'s picture is ${picture.length} characters; at most ${MAX_PICTURE_LENGTH}`);
  }
  for (const marker of picture.matchAll(/\[([^\]]*)\]/g)) {
    const body = marker[1] ?? "";
    if (!body.includes(",")) continue;
    for (const width of body.slice(body.lastIndexOf(",")).match(/\d+/g) ?? []) {
      if (Number(width) > MAX_PICTURE_WIDTH) {
        throw refusal(`${function_}'s picture asks for a width of ${width}; at most ${MAX_PICTURE_WIDTH}`);
      }
    }
  }
}

/** A built-in whose argument at `index` is a picture, checked by {@link assertPicture} first. */
function withPicture(name: (typeof WRAPPED)[number], index: number) {
  return function (this: Focus, ...args: unknown[]): unknown {
    assertPicture(`$${name}`, args[index]);
    return originals[name].implementation.apply(this, args);
  };
}

/** `$now`, the same instant within one evaluation as JSONata's (it reads `$millis`). */
function now(this: Focus, picture?: string, timezone?: string): unknown {
  assertPicture("$now", picture);
  const millis = (this.environment.lookup("millis") as NativeFunction).implementation.call(this);
  return originals.fromMillis.implementation.call(this, millis, picture, timezone);
}

/**
 * A built-in that returns one item per match (`$match`, `$split`), asked for one more than a
 * sequence may hold: JSONata collects every match in one loop that no evaluation step interrupts.
 */
function limitedToSequence(name: "match" | "split") {
  return function (this: Focus, text: unknown, pattern: unknown, limit?: number): unknown {
    const cap = budgetOf(this).limits.maxSequence + 1;
    return originals[name].implementation.call(
      this,
      text,
      pattern,
      limit === undefined ? cap : Math.min(limit, cap),
    );
  };
}

/**
 * `$replace`, counting the matches first (at most one more than a sequence may hold) and refusing
 * before it builds a string over the value limit: each match adds the replacement once.
 */
async function replace(
  this: Focus,
  text: string | undefined,
  pattern: unknown,
  replacement: unknown,
  limit?: number,
): Promise<unknown> {
  if (text === undefined || pattern === "")
    return originals.replace.implementation.call(this, text, pattern, replacement, limit);
  const budget = budgetOf(this);
  const cap = Math.min(limit ?? Number.POSITIVE_INFINITY, budget.limits.maxSequence + 1);
  const matches = await countMatches(this, text, pattern, cap);
  if (matches > budget.limits.maxSequence) {
    budget.fail("$replace's matches", "LOOM_EXPRESSION_MAX_SEQUENCE", matches, budget.limits.maxSequence);
  }
  if (typeof replacement === "string") {
    budget.assertBuildable("$replace's result", text.length + matches * replacement.length);
  }
  return originals.replace.implementation.call(this, text, pattern, replacement, limit);
}

async function countMatches(focus: Focus, text: string, pattern: unknown, cap: number): Promise<number> {
  if (typeof pattern !== "string") {
    return (
      ((await originals.match.implementation.call(focus, text, pattern, cap)) as unknown[] | undefined)
        ?.length ?? 0
    );
  }
  let count = 0;
  for (
    let at = text.indexOf(pattern);
    at !== -1 && count < cap;
    at = text.indexOf(pattern, at + pattern.length)
  ) {
    count += 1;
  }
  return count;
}

async function evaluateSource(this: Focus, source: string | undefined, focus?: unknown): Promise<unknown> {
  if (source !== undefined && source.length > MAX_EVAL_SOURCE) {
    throw refusal(`$eval's source is ${source.length} characters; at most ${MAX_EVAL_SOURCE}`);
  }
  // Each $eval starts an evaluation of its own, whose stack the depth limit does not see: an
  // expression that evaluates itself (`$s := '$eval($s)'`) recursed until the heap ran out.
  const budget = budgetOf(this);
  budget.enterEval();
  try {
    return await originals.eval.implementation.call(this, source, focus);
  } finally {
    budget.leaveEval();
  }
}

/** Each bounded function with JSONata's own signature for it, so arguments are checked and coerced alike. */
export const BOUNDED_FUNCTIONS = [
  { name: "pad", implementation: pad, signature: "<s-ns?:s>" },
  { name: "join", implementation: join, signature: "<a<s>s?:s>" },
  { name: "sort", implementation: sort, signature: "<af?:a>" },
  { name: "distinct", implementation: distinct, signature: "<x:x>" },
  { name: "match", implementation: limitedToSequence("match"), signature: "<s-f<s:o>n?:a<o>>" },
  { name: "split", implementation: limitedToSequence("split"), signature: "<s-(sf)n?:a<s>>" },
  { name: "replace", implementation: replace, signature: "<s-(sf)(sf)n?:s>" },
  { name: "formatNumber", implementation: withPicture("formatNumber", 1), signature: "<n-so?:s>" },
  { name: "formatInteger", implementation: withPicture("formatInteger", 1), signature: "<n-s:s>" },
  { name: "parseInteger", implementation: withPicture("parseInteger", 1), signature: "<s-s:n>" },
  { name: "fromMillis", implementation: withPicture("fromMillis", 1), signature: "<n-s?s?:s>" },
  { name: "toMillis", implementation: withPicture("toMillis", 1), signature: "<s-s?:n>" },
  { name: "now", implementation: now, signature: "<s?s?:s>" },
  { name: "eval", implementation: evaluateSource, signature: "<sx?:x>" },
] as const;
