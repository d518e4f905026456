import { z } from "zod";
import { DurationSchema } from "./duration.ts";
import { DataClassification } from "./mcp.ts";

export const PolicyAction = {
  WORKFLOW_START: "workflow.start",
  TOOLS_CALL: "tools.call",
  RESOURCES_READ: "resources.read",
  PROMPTS_GET: "prompts.get",
  RUNS_APPROVE: "runs.approve",
  RUNS_CANCEL: "runs.cancel",
  /** Start a failed or canceled run again as a new run (`loom runs rerun`); `workflow.start` is checked too. */
  RUNS_RERUN: "runs.rerun",
  /** Give a verdict on a step of a run (`loom feedback`). */
  RUNS_FEEDBACK: "runs.feedback",
  /** An MCP server asks the llm agent for a completion (`sampling/createMessage`); target `<server>`. */
  LLM_SAMPLE: "llm.sample",
  /** Read a run: its state, output and error (A2A GetTask, `loom runs get`). */
  RUNS_READ: "runs.read",
  /** List runs at all; each run listed is then filtered by `runs.read` for the caller. */
  RUNS_LIST: "runs.list",
  /** Follow a run's events as they come (A2A SubscribeToTask, `loom submit --watch`). */
  RUNS_SUBSCRIBE: "runs.subscribe",
  /** Register, read, list or delete the webhooks of a run (A2A push notification configs). */
  PUSH_CONFIGURE: "push.configure",
  /** Read a context's memory (`loom memory get`); `resource.startedBy` is the context's owner. */
  MEMORY_READ: "memory.read",
  /** Forget a context's memory (`loom memory clear`). */
  MEMORY_CLEAR: "memory.clear",
  /**
   * Run in a context someone else owns (a submission's `--context`, A2A `contextId`, a rerun), so
   * the run reads its memory and appends to it; `resource.startedBy` is the context's owner.
   */
  MEMORY_WRITE: "memory.write",
  /** Register a workflow version (`loom workflow apply`). */
  WORKFLOW_APPLY: "workflow.apply",
  /** Read the audit trail of a period and verify its chains (the console's audit page). */
  AUDIT_READ: "audit.read",
} as const;
export type PolicyAction = (typeof PolicyAction)[keyof typeof PolicyAction];

/** Actions about a workflow or its runs: rules match them by `workflows` globs, not `tools`. */
export const WORKFLOW_ACTIONS: ReadonlySet<PolicyAction> = new Set([
  PolicyAction.WORKFLOW_START,
  PolicyAction.RUNS_APPROVE,
  PolicyAction.RUNS_CANCEL,
  PolicyAction.RUNS_RERUN,
  PolicyAction.RUNS_FEEDBACK,
  PolicyAction.RUNS_READ,
  PolicyAction.RUNS_SUBSCRIBE,
  PolicyAction.PUSH_CONFIGURE,
  PolicyAction.WORKFLOW_APPLY,
]);

/**
 * Actions on something a server holds (a tool, resource, prompt or the server itself): rules match
 * them by `tools` globs, and the server's governance facts (classification, region) apply.
 */
export const TARGET_ACTIONS: ReadonlySet<PolicyAction> = new Set([
  PolicyAction.TOOLS_CALL,
  PolicyAction.RESOURCES_READ,
  PolicyAction.PROMPTS_GET,
  PolicyAction.LLM_SAMPLE,
]);

/** The rule name a decision carries when the caller's token was refused (not a policy denial). */
export const UNAUTHENTICATED_RULE = "unauthenticated";

export const PolicyEffect = { ALLOW: "allow", DENY: "deny" } as const;
export type PolicyEffect = (typeof PolicyEffect)[keyof typeof PolicyEffect];

/** The rule name a decision carries when no rule matched. */
export const DEFAULT_DENY_RULE = "default-deny";

/** Personal data the masking obligation can find in free text, not only in named fields. */
export const PiiKind = {
  EMAIL: "email",
  PHONE: "phone",
  SSN: "ssn",
  CARD: "card",
  IBAN: "iban",
} as const;
export type PiiKind = (typeof PiiKind)[keyof typeof PiiKind];

export const PrincipalSchema = z.object({
  id: z.string().min(1),
  roles: z.array(z.string().min(1)),
  /** Claims the deployment maps to attributes (for example `region`), as strings. */
  attributes: z.record(z.string(), z.string()).default({}),
});
export type Principal = z.infer<typeof PrincipalSchema>;
export type PrincipalInput = z.input<typeof PrincipalSchema>;

/** What the worker must do to a result before it leaves: the union of every matching allow's masks. */
export const ObligationsSchema = z
  .object({
    /** Object keys whose values are replaced, at any depth (`email`, `ssn`). */
    maskFields: z.array(z.string().min(1)).default([]),
    /** Personal data found by pattern (and checksum, for cards and IBANs) in any string. */
    maskPii: z.array(z.enum(PiiKind)).default([]),
    /** Extra patterns (JavaScript regular expressions) masked in any string. */
    maskPatterns: z.array(z.string().min(1)).default([]),
  })
  .strict();
export type Obligations = z.infer<typeof ObligationsSchema>;

/** Sent on `loom.v1.policy.decide`; the caller's token travels in the Authorization header. */
export const PolicyDecisionRequestSchema = z
  .object({
    action: z.enum(PolicyAction),
    resource: z
      .object({
        workflow: z.string().optional(),
        /** `<server>.<tool>` for `tools.call`, `<server>.<prompt>` for `prompts.get`, the URI for `resources.read`, `<server>` for `llm.sample`. */
        tool: z.string().optional(),
        /**
         * For actions on a run: the principal that started it (rules may let people steer their own
         * runs); for `memory.*`: the context's owner, who started its first run.
         */
        startedBy: z.string().optional(),
        /** For `memory.*`: the A2A contextId. */
        contextId: z.string().optional(),
      })
      .strict(),
    /** The exact arguments of a `tools.call`: checked against the tool's inputSchema and guards, and bound into the grant. */
    arguments: z.record(z.string(), z.unknown()).optional(),
    runId: z.string().optional(),
    stepId: z.string().optional(),
    /** The step's attempt (from 1): a grant authorises this attempt only. */
    attempt: z.number().int().positive().optional(),
    /**
     * The workflow and version of the run: named when a run starts, so its run token binds them,
     * and with every run-token decision, which must name the same.
     */
    runWorkflow: z
      .object({ id: z.string().min(1), version: z.number().int() })
      .strict()
      .optional(),
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
  obligations: ObligationsSchema.optional(),
  /** For an allowed `tools.call`: the signed grant (JWS) the worker requires before calling. */
  grant: z.string().optional(),
  /**
   * For an allowed `workflow.start`: a token acp-policy signs for this principal, this run and its
   * workflow version only. The orchestrator presents it for the run's later decisions on
   * `loom.v1.policy.decide.run` (nowhere else is it accepted), so a run waiting for an approval
   * outlives the caller's own short-lived token. It is never stored where others can read it.
   */
  runToken: z.string().optional(),
});
export type PolicyDecision = z.infer<typeof PolicyDecisionSchema>;

const GlobListSchema = z.array(z.string().min(1)).min(1);

/** A CEL expression; it is compiled when the policy loads, so a syntax error refuses the file. */
const CelSchema = z.string().min(1);

export const RuleObligationsSchema = z
  .object({
    mask: z
      .object({
        fields: z.array(z.string().min(1)).default([]),
        pii: z.array(z.enum(PiiKind)).default([]),
        patterns: z.array(z.string().min(1)).default([]),
      })
      .strict(),
  })
  .strict();

export const RateLimitSchema = z
  .object({
    /** Calls allowed per principal and tool within `per`. */
    max: z.number().int().positive(),
    per: DurationSchema,
  })
  .strict();

/** A deny rule with `violates` matches only when the arguments break one of these limits. */
export const ArgumentGuardSchema = z
  .object({
    /** Largest JSON encoding of the arguments, in bytes. */
    max_bytes: z.number().int().positive().optional(),
    /** Regular expressions; any string argument matching one violates the guard. */
    patterns: z.array(z.string().min(1)).optional(),
    /** Shell metacharacters (`; & | \` $ < > ( ) \n`) in any string argument violate the guard. */
    shell_metacharacters: z.boolean().optional(),
  })
  .strict();

export const PolicyRuleSchema = z
  .object({
    name: z.string().regex(/^[a-z0-9][a-z0-9_.-]*$/i, "use letters, digits, '.', '-' and '_'"),
    description: z.string().optional(),
    effect: z.enum(PolicyEffect),
    /** The rule applies to a principal holding any of these roles (`*` for everyone authenticated). */
    roles: GlobListSchema,
    /** Every attribute named must match one of its globs (attributes come from token claims). */
    attributes: z.record(z.string(), GlobListSchema).optional(),
    actions: z.array(z.enum(PolicyAction)).min(1),
    /**
     * Globs over `<server>.<tool>` (`tools.call`), `<server>.<prompt>` (`prompts.get`) or the resource
     * URI (`resources.read`); required for rules about those actions.
     */
    tools: GlobListSchema.optional(),
    /** Globs over workflow ids; required for rules about actions on a workflow or one of its runs. */
    workflows: GlobListSchema.optional(),
    /** The tool's data classification, from its server's governance metadata. */
    classifications: z.array(z.enum(DataClassification)).min(1).optional(),
    /** Only tools whose server is marked `exec: true` (they run commands). */
    exec: z.boolean().optional(),
    /** Data residency: source is the tool's data region, destination the caller's region. */
    context: z
      .object({ source_region: GlobListSchema.optional(), destination_region: GlobListSchema.optional() })
      .strict()
      .optional(),
    /** CEL over `principal`, `action`, `resource`, `context` and `args`; must be true for the rule to match. */
    when: CelSchema.optional(),
    violates: ArgumentGuardSchema.optional(),
    obligations: RuleObligationsSchema.optional(),
    rate_limit: RateLimitSchema.optional(),
  })
  .strict()
  .refine((rule) => !rule.actions.includes("tools.call") || rule.tools !== undefined, {
    message: "a rule about tools.call must list the tools it covers",
    path: ["tools"],
  })
  .refine(
    (rule) =>
      !(
        rule.actions.includes("resources.read") ||
        rule.actions.includes("prompts.get") ||
        rule.actions.includes("llm.sample")
      ) || rule.tools !== undefined,
    {
      message:
        "a rule about resources.read, prompts.get or llm.sample must list what it covers in tools (servers, for llm.sample)",
      path: ["tools"],
    },
  )
  .refine(
    (rule) => !rule.actions.some((action) => WORKFLOW_ACTIONS.has(action)) || rule.workflows !== undefined,
    {
      message: `a rule about ${[...WORKFLOW_ACTIONS].join(", ")} must list the workflows it covers`,
      path: ["workflows"],
    },
  )
  .refine((rule) => rule.violates === undefined || rule.effect === PolicyEffect.DENY, {
    message: "argument guards (violates) belong on deny rules",
    path: ["violates"],
  })
  .refine(
    (rule) => (rule.obligations === undefined && rule.rate_limit === undefined) || rule.effect === "allow",
    { message: "obligations and rate limits belong on allow rules", path: ["effect"] },
  );
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

/** The active policy in KV `loom_policy` (key `active`): the files as written, validated again on load. */
export const PolicyBundleSchema = z
  .object({
    files: z.array(z.object({ name: z.string().min(1), text: z.string() }).strict()).min(1),
    appliedAt: z.iso.datetime(),
  })
  .strict();
export type PolicyBundle = z.infer<typeof PolicyBundleSchema>;

/** Issuer, audience and type of grants, so a grant never passes for an access token or the reverse. */
export const GRANT_ISSUER = "acp-policy";
export const GRANT_AUDIENCE = "mcp-worker";
export const GRANT_TYPE = "loom-grant+jwt";
/** Type and audience of run tokens (see `PolicyDecision.runToken`), signed with the grant keys. */
export const RUN_TOKEN_TYPE = "loom-run+jwt";
export const RUN_TOKEN_AUDIENCE = "loom-run";

/** The claims of a run token besides iss, aud, sub, iat and exp. */
export const RunTokenClaimsSchema = z.object({
  run: z.string().min(1),
  /** The workflow and version the run executes. */
  wf: z.string().min(1),
  wfv: z.number().int(),
  /** The run whose delegate step started this one, if any. */
  parent: z.string().optional(),
  roles: z.array(z.string()),
  attributes: z.record(z.string(), z.string()),
});
export type RunTokenClaims = z.infer<typeof RunTokenClaimsSchema>;

/** The claims of a signed grant (JWS, EdDSA) acp-policy issues for one allowed tool call. */
export const GrantClaimsSchema = z.object({
  /** The principal the call acts for. */
  sub: z.string(),
  run: z.string(),
  step: z.string(),
  /** `tools.call`, `prompts.get` or `resources.read`. */
  action: z.enum(PolicyAction),
  /** The target as policy saw it: `<server>.<tool>`, `<server>.<prompt>` or `<server>.<uri>`. */
  tool: z.string(),
  /** sha256 of the canonical JSON of the exact arguments. */
  args: z.string().regex(/^[0-9a-f]{64}$/),
  obligations: ObligationsSchema,
  /** The step attempt it authorises (0 for a call outside a workflow step); it is used once. */
  attempt: z.number().int().nonnegative(),
  /** The rule that allowed it. */
  rule: z.string(),
  /** The principal's roles and attributes: a server's sampling during the call is decided for them. */
  roles: z.array(z.string()),
  attributes: z.record(z.string(), z.string()),
  /** The decision that issued it. */
  jti: z.string(),
});
export type GrantClaims = z.infer<typeof GrantClaimsSchema>;

/** `loom policy test` cases: each input with the effect (and optionally rule and obligations) it must get. */
export const PolicyTestFileSchema = z
  .object({
    /** Policy file or folder to test; by default the shipped `infra/policies/`. Relative to this file. */
    policy: z.string().optional(),
    cases: z
      .array(
        z
          .object({
            name: z.string().min(1),
            principal: PrincipalSchema,
            action: z.enum(PolicyAction),
            resource: z
              .object({
                tool: z.string().optional(),
                workflow: z.string().optional(),
                startedBy: z.string().optional(),
                contextId: z.string().optional(),
                classification: z.enum(DataClassification).optional(),
                exec: z.boolean().optional(),
                region: z.string().optional(),
              })
              .strict(),
            arguments: z.record(z.string(), z.unknown()).optional(),
            expect: z
              .object({
                effect: z.enum(PolicyEffect),
                rule: z.string().optional(),
                /** Only the lists named are compared, each as a set. */
                obligations: z
                  .object({
                    maskFields: z.array(z.string()).optional(),
                    maskPii: z.array(z.enum(PiiKind)).optional(),
                    maskPatterns: z.array(z.string()).optional(),
                  })
                  .strict()
                  .optional(),
              })
              .strict(),
          })
          .strict(),
      )
      .min(1),
  })
  .strict();
export type PolicyTestFile = z.infer<typeof PolicyTestFileSchema>;

/** The reply of `loom.v1.policy.explain`: the decision, and how each rule judged the request. */
export const PolicyExplanationSchema = z.object({
  decision: PolicyDecisionSchema.omit({ grant: true }),
  rules: z.array(
    z.object({
      name: z.string(),
      effect: z.enum(PolicyEffect),
      matched: z.boolean(),
      /** Why it matched, or the first condition that did not hold. */
      why: z.string(),
    }),
  ),
});
export type PolicyExplanation = z.infer<typeof PolicyExplanationSchema>;
