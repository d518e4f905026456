import {
  DEFAULT_DENY_RULE,
  type PolicyDecisionRequest,
  PolicyEffect,
  type PolicyRule,
  type Principal,
} from "../../schemas/policy.ts";
import { globMatches } from "./glob.ts";
import type { ActivePolicy } from "./policy-loader.ts";

export interface Verdict {
  effect: PolicyEffect;
  rule: string;
  reason: string;
}

/**
 * Decides a request with no I/O. A matching deny rule beats any allow; otherwise the first
 * matching allow decides; otherwise the request is refused by default.
 */
export function evaluate(
  policy: ActivePolicy,
  principal: Principal,
  request: PolicyDecisionRequest,
): Verdict {
  const matching = policy.rules.filter((rule) => ruleMatches(rule, principal, request));
  const target = describeTarget(request);
  const deny = matching.find((rule) => rule.effect === PolicyEffect.DENY);
  if (deny !== undefined) {
    return {
      effect: PolicyEffect.DENY,
      rule: deny.name,
      reason: `rule "${deny.name}" denies ${request.action} on ${target}`,
    };
  }
  const allow = matching.find((rule) => rule.effect === PolicyEffect.ALLOW);
  if (allow !== undefined) {
    return {
      effect: PolicyEffect.ALLOW,
      rule: allow.name,
      reason: `rule "${allow.name}" allows ${request.action} on ${target}`,
    };
  }
  return {
    effect: PolicyEffect.DENY,
    rule: DEFAULT_DENY_RULE,
    reason: `no rule allows ${principal.id} (roles: ${principal.roles.join(", ") || "none"}) ${request.action} on ${target}`,
  };
}

function ruleMatches(rule: PolicyRule, principal: Principal, request: PolicyDecisionRequest): boolean {
  if (!rule.actions.includes(request.action)) return false;
  if (!principal.roles.some((role) => anyGlob(rule.roles, role))) return false;
  if (request.action === "tools.call") return matchesOptional(rule.tools, request.resource.tool);
  return matchesOptional(rule.workflows, request.resource.workflow);
}

function matchesOptional(globs: string[] | undefined, value: string | undefined): boolean {
  return globs !== undefined && value !== undefined && anyGlob(globs, value);
}

function anyGlob(globs: string[], value: string): boolean {
  return globs.some((glob) => globMatches(glob, value));
}

export function describeTarget(request: PolicyDecisionRequest): string {
  return request.resource.tool ?? request.resource.workflow ?? "(nothing)";
}
