import { PolicyEffect, WORKFLOW_ACTIONS } from "../../schemas/policy.ts";
import type {
  AuthenticateReply,
  PermittedReply,
  PermittedRequest,
  PolicyMasksReply,
} from "../../schemas/policy-gateway.ts";
import { type DecideDependencies, factsFor } from "./decide.ts";
import { evaluate, everyMask } from "./evaluate.ts";

/**
 * `loom.v1.policy.authenticate`: the principal of a bearer token, verified exactly as for a
 * decision (signature, algorithm, issuer, audience, expiry); UNAUTHENTICATED otherwise.
 */
export async function authenticate(
  deps: Pick<DecideDependencies, "tokens">,
  authorization: string | undefined,
): Promise<AuthenticateReply> {
  return { principal: await deps.tokens.verify(authorization) };
}

/**
 * `loom.v1.policy.permitted`: whether the active policy could allow each operation for this
 * caller. A dry run: no grant, no rate-limit count, no audit record. The call itself is decided
 * again with its arguments, so a listing can only ever show too much, never let anything through.
 */
export async function permitted(
  deps: Pick<DecideDependencies, "tokens" | "policy" | "registry" | "validator" | "defaultRegion">,
  request: PermittedRequest,
  authorization: string | undefined,
): Promise<PermittedReply> {
  const principal = await deps.tokens.verify(authorization);
  const policy = deps.policy.active;
  const allowed = await Promise.all(
    request.checks.map(async (check) => {
      const decisionRequest = WORKFLOW_ACTIONS.has(check.action)
        ? {
            action: check.action,
            resource: {
              workflow: check.target,
              ...(check.startedBy === undefined ? {} : { startedBy: check.startedBy }),
            },
          }
        : { action: check.action, resource: { tool: check.target } };
      const facts = await factsFor(deps, principal, decisionRequest, { checkArguments: false });
      return evaluate(policy, principal, decisionRequest, facts).effect === PolicyEffect.ALLOW;
    }),
  );
  return { allowed };
}

/** Every mask the active policy can require, with its version (`loom.v1.policy.masks`). */
export function policyMasks(deps: Pick<DecideDependencies, "policy">): PolicyMasksReply {
  const { active } = deps.policy;
  return { obligations: everyMask(active.rules), policyVersion: active.version };
}
