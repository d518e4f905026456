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
   * A worker took a grant and was about to act on it; the record carries the grant. Workers wrote
   * it before acp-policy stored a decision's record ahead of its grant; chains from then still
   * hold it, and `loom audit verify` checks its grant like any other.
   */
  GRANT_ADMITTED: "grant.admitted",
  /**
   * A worker calls a tool again for a step whose earlier claim lapsed without an outcome (its
   * worker died mid-call): a tool without an idempotency key may see the step twice.
   */
  TOOL_REINVOCATION: "tool.reinvocation",
  /**
   * A worker answered a task from its step ledger: the step attempt's outcome was stored already
   * (the task was re-sent, or replayed), so nothing ran and no call went out. Its outcome is the
   * stored one; it is no execution, and `loom tools stats` and `loom feedback` do not count it.
   */
  TOOL_REPLAY: "tool.replay",
} as const;
export type AuditKind = (typeof AuditKind)[keyof typeof AuditKind];

/** `prevHash` of the first record in the chain. */
export const GENESIS_HASH = "0".repeat(64);

const Sha256Hex = z.string().regex(/^[0-9a-f]{64}$/, "a sha256 digest in hex");

/** One audit writer: a service process, named at its start; one chain per writer. */
export const AuditWriterSchema = z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, "letters, digits, '-' and '_'");

/**
 * A writer's public key in KV `loom_audit_keys`, under `<service>.<writer>`. Only the service's own
 * NATS user may write keys under its name, so a key found there was pinned by that service; the
 * bucket is write-once, so a pin is never replaced.
 */
export const AuditKeyPinSchema = z
  .object({
    service: z.string().min(1),
    writer: AuditWriterSchema,
    /** Ed25519 public key, SPKI DER in base64. */
    publicKey: z.string().min(1),
    createdAt: z.iso.datetime(),
  })
  .strict();
export type AuditKeyPin = z.infer<typeof AuditKeyPinSchema>;

/** The KV key of a writer's pinned public key. */
export function auditKeyName(service: string, writer: string): string {
  return `${service}.${writer}`;
}

/**
 * One append-only record in the `LOOM_AUDIT` stream. Arguments and results are recorded as
 * digests, never as values, so the trail holds no personal data. Each writer keeps its own chain:
 * a record carries its number in that chain (`seq`, from 1), the hash of the writer's record before
 * it, its own hash (sha256 over `prevHash` and its canonical JSON without `hash` and `sig`), and,
 * on the last record of each batch, the writer's Ed25519 signature over that hash.
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
  /**
   * For a tool, resource or prompt execution whose call went out (or was answered from the
   * worker's cache): the server version that served it, a configured version name or what the
   * server reported. `loom tools stats` and `loom feedback` count these executions as calls.
   */
  serverVersion: z.string().min(1).optional(),
  /** For such an execution: the answer came from the worker's cache, the server was not called. */
  cached: z.boolean().optional(),
  /** For a decision that let a grant out (and `grant.admitted`): the grant (JWS) acp-policy signed. */
  grant: z.string().optional(),
  writer: AuditWriterSchema,
  seq: z.number().int().positive(),
  prevHash: Sha256Hex,
  hash: Sha256Hex,
  /**
   * Ed25519 signature over the hash's bytes, base64url, by the key pinned for `<service>.<writer>`.
   * A writer signs the last record of each batch it publishes at once: through the hash chain the
   * signature covers every record of its chain up to that one. The others carry none.
   */
  sig: z.string().min(1).optional(),
});
export type AuditRecord = z.infer<typeof AuditRecordSchema>;
/** What a service hands the audit log; it fills in id, time, service, trace id and the chain. */
export const AuditEntrySchema = AuditRecordSchema.omit({
  id: true,
  time: true,
  service: true,
  traceId: true,
  writer: true,
  seq: true,
  prevHash: true,
  hash: true,
  sig: true,
});
export type AuditEntry = z.infer<typeof AuditEntrySchema>;

/**
 * A task's note of how it was answered, for its record: the MCP call it made (empty while no call
 * went out), or that the step ledger answered it.
 */
export interface ExecutedCall extends Partial<Pick<AuditRecord, "serverVersion" | "cached">> {
  /** The step attempt's outcome was stored already: the task is answered with it and nothing ran. */
  replayed?: boolean;
}

/** One writer's chain as `loom audit verify` finds it: intact, broken at its first bad record, or signed by no pinned key. */
export const AuditWriterReportSchema = z.object({
  service: z.string(),
  writer: z.string(),
  records: z.number().int().nonnegative(),
  status: z.enum(["intact", "broken", "unknown signer"]),
  /** The first record (its number in the writer's chain, and in the stream) that breaks it. */
  broken: z.object({ seq: z.number().int(), streamSeq: z.number().int(), problem: z.string() }).optional(),
});
export type AuditWriterReport = z.infer<typeof AuditWriterReportSchema>;

/** The whole trail verified: every writer's chain, and what is wrong with the stream itself. */
export const AuditReportSchema = z.object({
  records: z.number().int().nonnegative(),
  intact: z.boolean(),
  writers: z.array(AuditWriterReportSchema),
  /** Missing sequences, messages that are no audit record. */
  stream: z.array(z.string()),
  /**
   * Why a service's NATS user could replace its service's pinned keys, and so make a genuine
   * chain look broken: a `loom_audit_keys` bucket made before pins were write-once. Empty when the
   * broker refuses a second write to a pin.
   */
  pinsReplaceable: z.array(z.string()),
});
export type AuditReport = z.infer<typeof AuditReportSchema>;
