import type { NatsConnection } from "@nats-io/transport-node";
import type { Span } from "@opentelemetry/api";
import { PolicyDecideContract } from "../../schemas/contracts.ts";
import { ErrorCode } from "../../schemas/errors.ts";
import { type PolicyDecision, type PolicyDecisionRequest, PolicyEffect } from "../../schemas/policy.ts";
import { Headers, Subjects } from "../../schemas/subjects.ts";
import { LoomError, request } from "../kit/index.ts";

/**
 * Asks acp-policy about one operation on behalf of `authorization` and returns the allow (with its
 * grant); a deny is thrown as POLICY_DENIED naming the rule. Workflow steps and MCP gateway calls
 * both go through here, so they are decided the same way.
 */
export async function decideOperation(
  nc: NatsConnection,
  decisionRequest: PolicyDecisionRequest,
  options: {
    authorization: string | undefined;
    timeoutMs: number;
    span?: Span;
    /** `run` for a run's own operations, decided with its run token on the orchestrator-only subject. */
    channel?: "public" | "run";
  },
): Promise<PolicyDecision> {
  const subject = options.channel === "run" ? Subjects.POLICY_DECIDE_RUN : Subjects.POLICY_DECIDE;
  const decision = await request(nc, subject, PolicyDecideContract, decisionRequest, {
    timeoutMs: options.timeoutMs,
    headers: { [Headers.AUTHORIZATION]: options.authorization },
  });
  options.span?.setAttributes({ "loom.policy.rule": decision.rule, "loom.policy.effect": decision.effect });
  if (decision.effect === PolicyEffect.DENY) {
    throw new LoomError(
      ErrorCode.POLICY_DENIED,
      `policy denied ${decisionRequest.resource.tool ?? decisionRequest.action}: ${decision.reason}`,
      { details: { rule: decision.rule, decisionId: decision.decisionId } },
    );
  }
  return decision;
}
