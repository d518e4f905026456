import { z } from "zod";

export const PolicyAction = {
  WORKFLOW_START: "workflow.start",
  TOOLS_CALL: "tools.call",
} as const;
export type PolicyAction = (typeof PolicyAction)[keyof typeof PolicyAction];

export const PolicyEffect = { ALLOW: "allow", DENY: "deny" } as const;
export type PolicyEffect = (typeof PolicyEffect)[keyof typeof PolicyEffect];

/** The rule name a decision carries when no rule matched. */
export const DEFAULT_DENY_RULE = "default-deny";

export const PrincipalSchema = z.object({
  id: z.string().min(1),
  roles: z.array(z.string().min(1)),
});
export type Principal = z.infer<typeof PrincipalSchema>;

/** Sent on `loom.v1.policy.decide`; the caller's token travels in the Authorization header. */
export const PolicyDecisionRequestSchema = z
  .object({
    action: z.enum(PolicyAction),
    resource: z
      .object({
        workflow: z.string().optional(),
        /** `<server>.<tool>` for `tools.call`. */
        tool: z.string().optional(),
      })
      .strict(),
    runId: z.string().optional(),
    stepId: z.string().optional(),
  })
  .strict();
export type PolicyDecisionRequest = z.infer<typeof PolicyDecisionRequestSchema>;

export const PolicyDecisionSchema = z.object({
  decisionId: z.string(),
  effect: z.enum(PolicyEffect),
  /** The rule that decided, or `default-deny`. */
  rule: z.string(),
  reason: z.string(),
  principal: PrincipalSchema,
  policyVersion: z.string(),
});
export type PolicyDecision = z.infer<typeof PolicyDecisionSchema>;

const GlobListSchema = z.array(z.string().min(1)).min(1);

export const PolicyRuleSchema = z
  .object({
    name: z.string().regex(/^[a-z0-9][a-z0-9_.-]*$/i, "use letters, digits, '.', '-' and '_'"),
    description: z.string().optional(),
    effect: z.enum(PolicyEffect),
    /** The rule applies to a principal holding any of these roles (`*` for everyone authenticated). */
    roles: GlobListSchema,
    actions: z.array(z.enum(PolicyAction)).min(1),
    /** Globs over `<server>.<tool>`; required for rules about `tools.call`. */
    tools: GlobListSchema.optional(),
    /** Globs over workflow ids; required for rules about `workflow.start`. */
    workflows: GlobListSchema.optional(),
  })
  .strict()
  .refine((rule) => !rule.actions.includes("tools.call") || rule.tools !== undefined, {
    message: "a rule about tools.call must list the tools it covers",
    path: ["tools"],
  })
  .refine((rule) => !rule.actions.includes("workflow.start") || rule.workflows !== undefined, {
    message: "a rule about workflow.start must list the workflows it covers",
    path: ["workflows"],
  });
export type PolicyRule = z.infer<typeof PolicyRuleSchema>;

/** A policy file under `infra/policies/`. Default deny: what no rule allows is refused. */
export const PolicyFileSchema = z
  .object({
    version: z.string().min(1),
    rules: z.array(PolicyRuleSchema).superRefine((rules, context) => {
      const seen = new Set<string>();
      for (const [index, rule] of rules.entries()) {
        if (seen.has(rule.name)) {
          context.addIssue({
            code: "custom",
            path: [index, "name"],
            message: `rule "${rule.name}" is defined twice`,
          });
        }
        seen.add(rule.name);
      }
    }),
  })
  .strict();
export type PolicyFile = z.infer<typeof PolicyFileSchema>;

/**
 * Claims of a development token: `loom-dev.<base64url JSON>`. It is not signed, so only a
 * development stack may accept it; verified OAuth access tokens replace it.
 */
export const DevTokenClaimsSchema = z
  .object({
    sub: z.string().min(1),
    roles: z.array(z.string().min(1)).min(1),
  })
  .strict();
export type DevTokenClaims = z.infer<typeof DevTokenClaimsSchema>;
