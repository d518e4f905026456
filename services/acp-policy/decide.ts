import { randomUUID } from "node:crypto";
import type { PolicyDecision, PolicyDecisionRequest, Principal } from "../../schemas/policy.ts";
import { PolicyEffect } from "../../schemas/policy.ts";
import { type Logger, LoomError, principalFromAuthorization } from "../kit/index.ts";
import type { AuditLog } from "./audit-log.ts";
import { describeTarget, evaluate, type Verdict } from "./evaluate.ts";
import type { ActivePolicy } from "./policy-loader.ts";

const ANONYMOUS: Principal = { id: "anonymous", roles: [] };
export const UNAUTHENTICATED_RULE = "unauthenticated";

export interface DecideDependencies {
  policy: () => ActivePolicy;
  audit: AuditLog;
  log: Logger;
}

/** Answers one decision request: identify the caller, evaluate, audit, reply. */
export async function decide(
  deps: DecideDependencies,
  request: PolicyDecisionRequest,
  authorization: string | undefined,
): Promise<PolicyDecision> {
  const policy = deps.policy();
  let principal = ANONYMOUS;
  let verdict: Verdict;
  try {
    principal = principalFromAuthorization(authorization);
    verdict = evaluate(policy, principal, request);
  } catch (error) {
    if (!(error instanceof LoomError)) throw error;
    verdict = { effect: PolicyEffect.DENY, rule: UNAUTHENTICATED_RULE, reason: error.message };
  }
  await deps.audit.append({
    kind: "policy.decision",
    principal: principal.id,
    action: request.action,
    resource: describeTarget(request),
    effect: verdict.effect,
    rule: verdict.rule,
    reason: verdict.reason,
    ...(request.runId === undefined ? {} : { runId: request.runId }),
    ...(request.stepId === undefined ? {} : { stepId: request.stepId }),
  });
  deps.log.info(
    {
      action: request.action,
      resource: describeTarget(request),
      effect: verdict.effect,
      rule: verdict.rule,
      run_id: request.runId,
    },
    "policy decision",
  );
  return { decisionId: randomUUID(), ...verdict, principal, policyVersion: policy.version };
}
