import { createHash } from "node:crypto";

/**
 * JSON with object keys sorted at every depth, so equal values always hash alike whatever order
 * their keys were built in (the orchestrator, acp-policy and the worker each build arguments anew).
 */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_key, inner: unknown) => {
    if (inner === null || typeof inner !== "object" || Array.isArray(inner)) return inner;
    return Object.fromEntries(
      Object.entries(inner as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)),
    );
  });
}

/** sha256 of a string, in hex. */
export function sha256Hex(text: string): string {
  return createHash("sha256").update(text).digest("hex");
}

/** sha256 of a value's canonical JSON: what audit records and grants carry instead of the value. */
export function digestOf(value: unknown): string {
  return sha256Hex(canonicalJson(value ?? null));
}
