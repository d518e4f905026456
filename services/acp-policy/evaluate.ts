import type { CelInput } from "@bufbuild/cel";
import type { z } from "zod";
import { splitToolName } from "../../schemas/mcp.ts";
import {
  DEFAULT_DENY_RULE,
  type Obligations,
  type PolicyDecisionRequest,
  PolicyEffect,
  type PolicyRule,
  type Principal,
  type RateLimitSchema,
  TARGET_ACTIONS,
  WORKFLOW_ACTIONS,
} from "../../schemas/policy.ts";
import { NO_MASKS, unionOfMasks } from "../kit/masking.ts";
import { conditionHolds } from "./conditions.ts";
import { globMatches } from "./glob.ts";
import { guardViolation } from "./guards.ts";
import type { ActivePolicy } from "./policy-loader.ts";

/** What acp-policy knows about the target besides the request: from the tool registry and the caller. */
export interface DecisionFacts {
  tool?: { classification?: string; exec?: boolean; region?: string };
  /** Where the result goes: the caller's region. */
  destinationRegion?: string;
}

export interface Verdict {
  effect: PolicyEffect;
  rule: string;
  reason: string;
  /** Masks every matching allow asks for (their union); absent when none does. */
  obligations?: Obligations;
  /** The deciding allow's rate limit, which the caller enforces (it holds the counters). */
  rateLimit?: z.infer<typeof RateLimitSchema>;
}

export interface RuleJudgement {
  rule: PolicyRule;
  matched: boolean;
  why: string;
}

/**
 * Decides a request with no I/O. A matching deny rule beats any allow; otherwise the first
 * matching allow decides, carrying the obligations of every matching allow; otherwise the request
 * is refused by default.
 */
export function evaluate(
  policy: ActivePolicy,
  principal: Principal,
  request: PolicyDecisionRequest,
  facts: DecisionFacts = {},
): Verdict {
  const matching = judgeRules(policy, principal, request, facts)
    .filter((judgement) => judgement.matched)
    .map((judgement) => judgement.rule);
  const target = describeTarget(request);
  const deny = matching.find((rule) => rule.effect === PolicyEffect.DENY);
  if (deny !== undefined) {
    const violation =
      deny.violates === undefined ? undefined : guardViolation(deny.violates, request.arguments);
    return {
      effect: PolicyEffect.DENY,
      rule: deny.name,
      reason: `rule "${deny.name}" denies ${request.action} on ${target}${violation ? `: ${violation}` : ""}`,
    };
  }
  const allows = matching.filter((rule) => rule.effect === PolicyEffect.ALLOW);
  const allow = allows[0];
  if (allow !== undefined) {
    const obligations = mergeObligations(allows);
    return {
      effect: PolicyEffect.ALLOW,
      rule: allow.name,
      reason: `rule "${allow.name}" allows ${request.action} on ${target}`,
      ...(obligations === undefined ? {} : { obligations }),
      ...(allow.rate_limit === undefined ? {} : { rateLimit: allow.rate_limit }),
    };
  }
  return {
    effect: PolicyEffect.DENY,
    rule: DEFAULT_DENY_RULE,
    reason: `no rule allows ${principal.id} (roles: ${principal.roles.join(", ") || "none"}) ${request.action} on ${target}`,
  };
}

/** How every rule judges the request, in policy order: what `loom policy explain` prints. */
export function judgeRules(
  policy: ActivePolicy,
  principal: Principal,
  request: PolicyDecisionRequest,
  facts: DecisionFacts = {},
): RuleJudgement[] {
  const bindings = celBindings(principal, request, facts);
  return policy.rules.map((rule) => {
    const miss = firstMiss(rule, principal, request, facts, bindings);
    return { rule, matched: miss === undefined, why: miss ?? "every condition holds" };
  });
}

/** The first condition of `rule` that does not hold, or undefined when the rule matches. */
function firstMiss(
  rule: PolicyRule,
  principal: Principal,
  request: PolicyDecisionRequest,
  facts: DecisionFacts,
  bindings: Record<string, CelInput>,
): string | undefined {
  if (!rule.actions.includes(request.action)) return `action ${request.action} is not one of its actions`;
  if (!principal.roles.some((role) => anyGlob(rule.roles, role))) return "no role of the caller matches";
  for (const [name, globs] of Object.entries(rule.attributes ?? {})) {
    const value = principal.attributes[name];
    if (value === undefined || !anyGlob(globs, value)) return `attribute ${name} does not match`;
  }
  if (WORKFLOW_ACTIONS.has(request.action)) {
    if (!matchesOptional(rule.workflows, request.resource.workflow)) return "workflow does not match";
  } else if (TARGET_ACTIONS.has(request.action) && !matchesOptional(rule.tools, request.resource.tool)) {
    return "tool does not match";
  }
  const tool = facts.tool ?? {};
  if (rule.classifications !== undefined && !rule.classifications.some((c) => c === tool.classification)) {
    return `data classification ${tool.classification ?? "(unknown)"} does not match`;
  }
  if (rule.exec !== undefined && rule.exec !== (tool.exec === true)) {
    return rule.exec ? "the tool is not marked exec" : "the tool is marked exec";
  }
  if (
    rule.context?.source_region !== undefined &&
    !matchesOptional(rule.context.source_region, tool.region)
  ) {
    return `source region ${tool.region ?? "(unknown)"} does not match`;
  }
  if (
    rule.context?.destination_region !== undefined &&
    !matchesOptional(rule.context.destination_region, facts.destinationRegion)
  ) {
    return `destination region ${facts.destinationRegion ?? "(unknown)"} does not match`;
  }
  if (rule.when !== undefined) {
    const { holds, error } = conditionHolds(rule.when, rule.name, bindings);
    // Fail closed: a deny whose condition cannot be evaluated still denies, an allow does not allow.
    if (error !== undefined && rule.effect === PolicyEffect.DENY) return undefined;
    if (!holds)
      return error === undefined ? "condition (when) is false" : `condition (when) failed: ${error}`;
  }
  if (rule.violates !== undefined && guardViolation(rule.violates, request.arguments) === undefined) {
    return "the arguments keep to its guard";
  }
  return undefined;
}

function celBindings(
  principal: Principal,
  request: PolicyDecisionRequest,
  facts: DecisionFacts,
): Record<string, CelInput> {
  const server = request.resource.tool === undefined ? "" : splitToolName(request.resource.tool).server;
  return {
    principal: { id: principal.id, roles: principal.roles, attributes: principal.attributes },
    action: request.action,
    resource: {
      tool: request.resource.tool ?? "",
      server,
      workflow: request.resource.workflow ?? "",
      started_by: request.resource.startedBy ?? "",
      context_id: request.resource.contextId ?? "",
      classification: facts.tool?.classification ?? "",
      exec: facts.tool?.exec === true,
      region: facts.tool?.region ?? "",
    },
    context: { source_region: facts.tool?.region ?? "", destination_region: facts.destinationRegion ?? "" },
    args: (request.arguments ?? {}) as CelInput,
  } as Record<string, CelInput>;
}

function mergeObligations(rules: PolicyRule[]): Obligations | undefined {
  const masks = rules.flatMap((rule) => (rule.obligations === undefined ? [] : [rule.obligations.mask]));
  if (masks.length === 0) return undefined;
  return unionOfMasks(
    ...masks.map((mask) => ({ maskFields: mask.fields, maskPii: mask.pii, maskPatterns: mask.patterns })),
  );
}

/**
 * Every mask the policy can require of anyone, whatever the action: the union of its rules'
 * obligations (only allow rules carry them).
 */
export function everyMask(rules: PolicyRule[]): Obligations {
  return mergeObligations(rules) ?? NO_MASKS;
}

function matchesOptional(globs: string[] | undefined, value: string | undefined): boolean {
  return globs !== undefined && value !== undefined && anyGlob(globs, value);
}

function anyGlob(globs: string[], value: string): boolean {
  return globs.some((glob) => globMatches(glob, value));
}

export function describeTarget(request: PolicyDecisionRequest): string {
  const { tool, workflow, contextId } = request.resource;
  return tool ?? workflow ?? (contextId === undefined ? "(nothing)" : `context ${contextId}`);
}
