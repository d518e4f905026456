import { type Obligations, PiiKind } from "../../schemas/policy.ts";

export const MASK = "[masked]";

const DETECTORS: Record<PiiKind, { pattern: RegExp; accept?: (match: string) => boolean }> = {
  [PiiKind.EMAIL]: { pattern: /[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}/g },
  [PiiKind.SSN]: { pattern: /\b\d{3}-\d{2}-\d{4}\b/g },
  // International or national numbers with at least 9 digits, in the usual groupings.
  [PiiKind.PHONE]: {
    pattern: /(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,4}\)[ .-]?)?\d{2,4}(?:[ .-]\d{2,4}){2,4}\b/g,
    accept: (match) => digits(match).length >= 9,
  },
  [PiiKind.CARD]: { pattern: /\b\d(?:[ -]?\d){12,18}\b/g, accept: (match) => luhnValid(digits(match)) },
  [PiiKind.IBAN]: {
    pattern: /\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b/g,
    accept: (match) => ibanValid(match),
  },
};

/**
 * Every masking the data can be given without knowing the reader: each kind of personal data the
 * masking detects, as a value anywhere and as a field named for it. What is shown to a reader who
 * may not see a run unmasked, when it is derived from the run's data by an expression (an approval's
 * prompt), is derived from the data masked so: re-encoding a masked value reveals nothing.
 */
export const ALL_PERSONAL_DATA: Obligations = {
  maskFields: Object.values(PiiKind),
  maskPii: Object.values(PiiKind),
  maskPatterns: [],
};

/** The obligations of a decision that asks for no masking. */
export const NO_MASKS: Obligations = { maskFields: [], maskPii: [], maskPatterns: [] };

/** Every mask any of `obligations` asks for. */
export function unionOfMasks(...obligations: Obligations[]): Obligations {
  const union = <T>(lists: T[][]) => [...new Set(lists.flat())];
  return {
    maskFields: union(obligations.map((each) => each.maskFields)),
    maskPii: union(obligations.map((each) => each.maskPii)),
    maskPatterns: union(obligations.map((each) => each.maskPatterns)),
  };
}

/** Whether obligations ask for anything at all, so a result without any skips the walk. */
export function hasMasks(obligations: Obligations): boolean {
  return obligations.maskFields.length + obligations.maskPii.length + obligations.maskPatterns.length > 0;
}

/** Masks a value: fields by name, then patterns in every string. */
export function maskValue(value: unknown, obligations: Obligations): unknown {
  if (typeof value === "string") return maskString(value, obligations);
  if (Array.isArray(value)) return value.map((item) => maskValue(item, obligations));
  if (value !== null && typeof value === "object") {
    return Object.fromEntries(
      Object.entries(value).map(([key, item]) => [
        key,
        obligations.maskFields.includes(key) ? MASK : maskValue(item, obligations),
      ]),
    );
  }
  return value;
}

/** Text that is JSON is masked as a value (so field names apply), any other text by pattern. */
export function maskText(text: string, obligations: Obligations): string {
  try {
    return JSON.stringify(maskValue(JSON.parse(text), obligations));
  } catch {
    return maskString(text, obligations);
  }
}

/**
 * Masks free text: named fields where it embeds JSON (`"ssn": "…"` inside an error message or a
 * log line), then detected personal data and custom patterns.
 */
function maskString(text: string, obligations: Obligations): string {
  let masked = text;
  for (const field of obligations.maskFields) {
    masked = masked.replace(embeddedField(field), `$1"${MASK}"`);
  }
  for (const kind of obligations.maskPii) {
    const { pattern, accept } = DETECTORS[kind];
    masked = masked.replace(pattern, (match) => (accept === undefined || accept(match) ? MASK : match));
  }
  for (const source of obligations.maskPatterns) masked = masked.replace(new RegExp(source, "gu"), MASK);
  return masked;
}

/** `"field": <a JSON string, number or literal>` anywhere in a text. */
function embeddedField(field: string): RegExp {
  const name = field.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  return new RegExp(`("${name}"\\s*:\\s*)(?:"(?:[^"\\\\]|\\\\.)*"|-?\\d[\\d.eE+-]*|true|false|null)`, "g");
}

function digits(text: string): string {
  return text.replace(/\D/g, "");
}

/** The Luhn checksum card numbers carry, so order numbers and the like are left alone. */
export function luhnValid(number: string): boolean {
  if (number.length < 13 || number.length > 19) return false;
  let sum = 0;
  for (let index = 0; index < number.length; index++) {
    let digit = Number(number[number.length - 1 - index]);
    if (index % 2 === 1) {
      digit *= 2;
      if (digit > 9) digit -= 9;
    }
    sum += digit;
  }
  return sum % 10 === 0;
}

/** ISO 13616 check: move the country code and check digits to the end, read letters as numbers, mod 97 = 1. */
export function ibanValid(text: string): boolean {
  const iban = text.replace(/ /g, "");
  if (iban.length < 15 || iban.length > 34) return false;
  const rearranged = iban.slice(4) + iban.slice(0, 4);
  let remainder = 0;
  for (const char of rearranged) {
    const value = /\d/.test(char) ? char : String(char.charCodeAt(0) - 55);
    for (const digit of value) remainder = (remainder * 10 + Number(digit)) % 97;
  }
  return remainder === 1;
}
