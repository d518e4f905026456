import type { NatsConnection } from "@nats-io/transport-node";
import type { Span } from "@opentelemetry/api";
import {
  PolicyAuthenticateContract,
  PolicyDecideContract,
  PolicyMasksContract,
  PolicyPermittedContract,
} from "../../schemas/contracts.ts";
import { ErrorCode } from "../../schemas/errors.ts";
import {
  type Obligations,
  type PolicyDecision,
  type PolicyDecisionRequest,
  PolicyEffect,
  type Principal,
  UNAUTHENTICATED_RULE,
} from "../../schemas/policy.ts";
import type { PermittedRequest } from "../../schemas/policy-gateway.ts";
import { Headers, Subjects } from "../../schemas/subjects.ts";
import { request } from "./bus.ts";
import { LoomError } from "./errors.ts";

export interface AuthorizeOptions {
  /** The caller's `Authorization` header value, forwarded to acp-policy, which verifies it. */
  authorization: string | undefined;
  timeoutMs: number;
  span?: Span;
  /** What the refusal names, `policy denied <what> (rule <rule>): …`; by default the target or the action. */
  what?: string;
  /**
   * `run` for a run's own operations, decided with its run token on the subject only an
   * orchestrator may publish to; `public` (the default) for a caller's own token.
   */
  channel?: "public" | "run";
}

/**
 * Asks acp-policy about one operation on behalf of `authorization` and returns the allow (with its
 * grant or obligations). A refused token is thrown as UNAUTHENTICATED, a deny as POLICY_DENIED
 * naming the rule. Every service asks through here, so every edge decides the same way.
 */
export async function authorize(
  nc: NatsConnection,
  decisionRequest: PolicyDecisionRequest,
  options: AuthorizeOptions,
): Promise<PolicyDecision> {
  const subject = options.channel === "run" ? Subjects.POLICY_DECIDE_RUN : Subjects.POLICY_DECIDE;
  const decision = await request(nc, subject, PolicyDecideContract, decisionRequest, {
    timeoutMs: options.timeoutMs,
    headers: { [Headers.AUTHORIZATION]: options.authorization },
  });
  options.span?.setAttributes({ "loom.policy.rule": decision.rule, "loom.policy.effect": decision.effect });
  if (decision.effect === PolicyEffect.ALLOW) return decision;
  throw refusalOf(decision, options.what ?? decisionRequest.resource.tool ?? decisionRequest.action);
}

/**
 * A decision that did not allow, as the error its asker sees: UNAUTHENTICATED for a refused token,
 * POLICY_DENIED naming `what` and the rule otherwise.
 */
export function refusalOf(decision: PolicyDecision, what: string): LoomError {
  const details = { rule: decision.rule, decisionId: decision.decisionId };
  if (decision.rule === UNAUTHENTICATED_RULE) {
    return new LoomError(ErrorCode.UNAUTHENTICATED, decision.reason, { details });
  }
  return new LoomError(
    ErrorCode.POLICY_DENIED,
    `policy denied ${what} (rule ${decision.rule}): ${decision.reason}`,
    {
      details,
    },
  );
}

/**
 * The principal of a client's bearer token, verified by acp-policy (signature, issuer, audience,
 * expiry); a LoomError UNAUTHENTICATED when it refuses the token. Run tokens never pass: they speak
 * for one run, not for a client.
 */
export async function authenticate(
  nc: NatsConnection,
  authorization: string | undefined,
  timeoutMs: number,
): Promise<Principal> {
  const reply = await request(
    nc,
    Subjects.POLICY_AUTHENTICATE,
    PolicyAuthenticateContract,
    {},
    { timeoutMs, headers: { [Headers.AUTHORIZATION]: authorization } },
  );
  return reply.principal;
}

/**
 * For each check, whether policy could allow it to the caller: a dry run for listings that grants,
 * counts and audits nothing. Whatever is then done with an item is decided again on its own.
 */
export async function permitted(
  nc: NatsConnection,
  authorization: string | undefined,
  checks: PermittedRequest["checks"],
  timeoutMs: number,
): Promise<boolean[]> {
  if (checks.length === 0) return [];
  const reply = await request(
    nc,
    Subjects.POLICY_PERMITTED,
    PolicyPermittedContract,
    { checks },
    { timeoutMs, headers: { [Headers.AUTHORIZATION]: authorization } },
  );
  return reply.allowed;
}

/** Every mask the active policy can require of anyone (only the orchestrator's NATS user may ask). */
export async function policyMasks(nc: NatsConnection, timeoutMs: number): Promise<Obligations> {
  const reply = await request(nc, Subjects.POLICY_MASKS, PolicyMasksContract, {}, { timeoutMs });
  return reply.obligations;
}
