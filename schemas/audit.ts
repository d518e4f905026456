import { z } from "zod";
import { PolicyAction, PolicyEffect } from "./policy.ts";

export const AuditKind = {
  POLICY_DECISION: "policy.decision",
  TOOL_EXECUTION: "tool.execution",
  GRANT_REFUSED: "grant.refused",
  /** The llm agent answered (or failed to answer) an MCP server's sampling request. */
  LLM_ANSWER: "llm.answer",
  /** A gateway client answered (or did not answer) an MCP server's elicitation. */
  ELICITATION_ANSWER: "elicitation.answer",
  /**
   * A worker calls a tool again for a step whose earlier claim lapsed without an outcome (its
   * worker died mid-call): a tool without an idempotency key may see the step twice.
   */
  TOOL_REINVOCATION: "tool.reinvocation",
} as const;
export type AuditKind = (typeof AuditKind)[keyof typeof AuditKind];

/** `prevHash` of the first record in the chain. */
export const GENESIS_HASH = "0".repeat(64);

const Sha256Hex = z.string().regex(/^[0-9a-f]{64}$/, "a sha256 digest in hex");

/**
 * One append-only record in the `LOOM_AUDIT` stream. Arguments and results are recorded as
 * digests, never as values, so the trail holds no personal data. Each record carries the hash of
 * the one before it and its own hash (sha256 over `prevHash` and its canonical JSON without `hash`).
 */
export const AuditRecordSchema = z.object({
  id: z.string(),
  time: z.iso.datetime(),
  service: z.string(),
  kind: z.enum(AuditKind),
  /** Who asked; `anonymous` when no valid token was presented. */
  principal: z.string(),
  action: z.enum(PolicyAction).optional(),
  resource: z.string(),
  /** For decisions. */
  effect: z.enum(PolicyEffect).optional(),
  rule: z.string().optional(),
  reason: z.string().optional(),
  /** For executions and refusals: `ok` or the error code. */
  outcome: z.string().optional(),
  latencyMs: z.number().nonnegative().optional(),
  argsDigest: Sha256Hex.optional(),
  resultDigest: Sha256Hex.optional(),
  runId: z.string().optional(),
  stepId: z.string().optional(),
  traceId: z.string().optional(),
  prevHash: Sha256Hex,
  hash: Sha256Hex,
});
export type AuditRecord = z.infer<typeof AuditRecordSchema>;
/** What a service hands the audit log; it fills in id, time, service, trace id and the chain. */
export type AuditEntry = Omit<AuditRecord, "id" | "time" | "service" | "traceId" | "prevHash" | "hash">;
