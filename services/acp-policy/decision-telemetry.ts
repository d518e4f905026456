import type { PolicyDecision, PolicyDecisionRequest } from "../../schemas/policy.ts";
import { recordPolicyDecision, withSpan } from "../kit/index.ts";

/**
 * Wraps one decision in a `decide <action>` span that names the deciding rule and effect, and
 * counts it in `loom_policy_decisions_total`.
 */
export function observeDecision(
  request: PolicyDecisionRequest,
  decide: () => Promise<PolicyDecision>,
): Promise<PolicyDecision> {
  const resource = Object.values(request.resource).find((value) => typeof value === "string");
  return withSpan(
    `decide ${request.action}`,
    {
      attributes: {
        "loom.policy.action": request.action,
        ...(resource === undefined ? {} : { "loom.policy.resource": resource }),
        ...(request.runId === undefined ? {} : { "loom.run.id": request.runId }),
        ...(request.stepId === undefined ? {} : { "loom.step.id": request.stepId }),
      },
    },
    async (span) => {
      const started = performance.now();
      const decision = await decide();
      span.setAttributes({ "loom.policy.rule": decision.rule, "loom.policy.effect": decision.effect });
      recordPolicyDecision({
        action: request.action,
        effect: decision.effect,
        rule: decision.rule,
        seconds: (performance.now() - started) / 1000,
      });
      return decision;
    },
  );
}
