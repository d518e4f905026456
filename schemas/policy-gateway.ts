import { z } from "zod";
import { ObligationsSchema, PolicyAction, PrincipalSchema } from "./policy.ts";

/**
 * Sent on `loom.v1.policy.authenticate` with the caller's token in the Authorization header:
 * acp-policy verifies it (signature, issuer, audience, expiry) and names its principal, or answers
 * UNAUTHENTICATED. Run tokens are refused: they speak for one run, not for a client.
 */
export const AuthenticateRequestSchema = z.object({}).strict();
export const AuthenticateReplySchema = z.object({ principal: PrincipalSchema });
export type AuthenticateReply = z.infer<typeof AuthenticateReplySchema>;

/** Most targets one `loom.v1.policy.permitted` request may ask about. */
export const MAX_PERMITTED_CHECKS = 10_000;

/**
 * Sent on `loom.v1.policy.permitted`: which of these operations may the caller perform at all? A
 * dry run for listings (the MCP gateway's `tools/list`, `loom runs list`): nothing is granted, counted or audited,
 * and no arguments are known, so argument checks are left to the decision on the call itself.
 */
export const PermittedRequestSchema = z
  .object({
    checks: z
      .array(
        z
          .object({
            action: z.enum([
              PolicyAction.TOOLS_CALL,
              PolicyAction.RESOURCES_READ,
              PolicyAction.PROMPTS_GET,
              PolicyAction.RUNS_READ,
              PolicyAction.RUNS_APPROVE,
            ]),
            /**
             * `<server>.<tool>`, `<server>.<prompt>` or `<server>.<uri>`, as in a decision request;
             * the workflow id for `runs.read` (a run listing) and `runs.approve` (who may answer).
             */
            target: z.string().min(1),
            /** For a run's action: who started the run. */
            startedBy: z.string().optional(),
          })
          .strict(),
      )
      .max(MAX_PERMITTED_CHECKS),
  })
  .strict();
export type PermittedRequest = z.infer<typeof PermittedRequestSchema>;

/** One answer per check, in order. */
export const PermittedReplySchema = z.object({ allowed: z.array(z.boolean()) });
export type PermittedReply = z.infer<typeof PermittedReplySchema>;

/**
 * Sent on `loom.v1.policy.masks` (only the orchestrator's NATS user may ask): every mask the active
 * policy can require of anyone, the union of its rules' obligations. What is shown to a reader who
 * may not see a run unmasked, when an expression derives it from the run's data (an approval's
 * prompt), is derived from data masked so.
 */
export const PolicyMasksRequestSchema = z.object({}).strict();
export const PolicyMasksReplySchema = z.object({ obligations: ObligationsSchema, policyVersion: z.string() });
export type PolicyMasksReply = z.infer<typeof PolicyMasksReplySchema>;
