import { z } from "zod";
import { PolicyAction, PolicyEffect } from "./policy.ts";

/** One append-only record in the `LOOM_AUDIT` stream. */
export const AuditRecordSchema = z.object({
  id: z.string(),
  time: z.iso.datetime(),
  service: z.string(),
  kind: z.literal("policy.decision"),
  /** Who asked; `anonymous` when no valid token was presented. */
  principal: z.string(),
  action: z.enum(PolicyAction),
  resource: z.string(),
  effect: z.enum(PolicyEffect),
  rule: z.string(),
  reason: z.string(),
  runId: z.string().optional(),
  stepId: z.string().optional(),
  traceId: z.string().optional(),
});
export type AuditRecord = z.infer<typeof AuditRecordSchema>;
