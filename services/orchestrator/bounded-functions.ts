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
/** The longest source `$eval` parses: parsing is one synchronous call, about 1 ms per KiB. */
const MAX_EVAL_SOURCE = 64 * 1024;

/** What JSONata passes a built-in function as `this`. */
interface Focus {
  environment: { lookup(name: string): unknown };
}

interface NativeFunction {
  implementation: (this: Focus, ...args: unknown[]) => unknown;
}

const originals = (await jsonata("{'sort': $sort, 'fromMillis': $fromMillis, 'eval': $eval}").evaluate(
  {},
)) as Record<"sort" | "fromMillis" | "eval", NativeFunction>;

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
  const missing = Math.abs(width) - Array.from(text).length;
  if (missing <= 0 || padding === "") return text;
  const fill = Array.from(padding.repeat(Math.ceil(missing / Array.from(padding).length)))
    .slice(0, missing)
    .join("");
  return width > 0 ? text + fill : fill + text;
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

/** Refuses a date picture component wider than {@link MAX_PICTURE_WIDTH}: `[Y,40000000]` pads for seconds. */
function assertPictureWidths(function_: string, picture: string | undefined): void {
  if (picture === undefined) return;
  for (const marker of picture.matchAll(/\[([^\]]*)\]/g)) {
    const modifier = marker[1]?.split(",").at(-1) ?? "";
    if (!marker[1]?.includes(",")) continue;
    for (const width of modifier.match(/\d+/g) ?? []) {
      if (Number(width) > MAX_PICTURE_WIDTH) {
        throw refusal(`${function_}'s picture asks for a width of ${width}; at most ${MAX_PICTURE_WIDTH}`);
      }
    }
  }
}

function fromMillis(this: Focus, millis: number | undefined, picture?: string, timezone?: string): unknown {
  assertPictureWidths("$fromMillis", picture);
  return originals.fromMillis.implementation.call(this, millis, picture, timezone);
}

/** `$now`, the same instant within one evaluation as JSONata's (it reads `$millis`). */
function now(this: Focus, picture?: string, timezone?: string): unknown {
  assertPictureWidths("$now", picture);
  const millis = (this.environment.lookup("millis") as NativeFunction).implementation.call(this);
  return originals.fromMillis.implementation.call(this, millis, picture, timezone);
}

function evaluateSource(this: Focus, source: string | undefined, focus?: unknown): unknown {
  if (source !== undefined && source.length > MAX_EVAL_SOURCE) {
    throw refusal(`$eval's source is ${source.length} characters; at most ${MAX_EVAL_SOURCE}`);
  }
  return originals.eval.implementation.call(this, source, focus);
}

/** Each bounded function with JSONata's own signature for it, so arguments are checked and coerced alike. */
export const BOUNDED_FUNCTIONS = [
  { name: "pad", implementation: pad, signature: "<s-ns?:s>" },
  { name: "join", implementation: join, signature: "<a<s>s?:s>" },
  { name: "sort", implementation: sort, signature: "<af?:a>" },
  { name: "distinct", implementation: distinct, signature: "<x:x>" },
  { name: "fromMillis", implementation: fromMillis, signature: "<n-s?s?:s>" },
  { name: "now", implementation: now, signature: "<s?s?:s>" },
  { name: "eval", implementation: evaluateSource, signature: "<sx?:x>" },
] as const;
