import { randomUUID } from "node:crypto";
import { AuditKind } from "../../schemas/audit.ts";
import { ErrorCode } from "../../schemas/errors.ts";
import { type Governance, splitToolName } from "../../schemas/mcp.ts";
import {
  type PolicyDecision,
  type PolicyDecisionRequest,
  PolicyEffect,
  type PolicyExplanation,
  type Principal,
  TARGET_ACTIONS,
  UNAUTHENTICATED_RULE,
} from "../../schemas/policy.ts";
import type { AuditLog } from "../kit/audit-chain.ts";
import { digestOf } from "../kit/digest.ts";
import { type JsonSchemaValidator, type Logger, LoomError } from "../kit/index.ts";
import type { AnomalyDetector } from "./anomalies.ts";
import { type DecisionFacts, describeTarget, evaluate, judgeRules, type Verdict } from "./evaluate.ts";
import type { GrantSigner } from "./grant-signer.ts";
import type { PolicyStore } from "./policy-store.ts";
import type { RateLimiter } from "./rate-limiter.ts";
import type { RegistryView } from "./registry-view.ts";
import type { DecisionChannel, TokenVerifier } from "./token-verifier.ts";

const ANONYMOUS: Principal = { id: "anonymous", roles: [], attributes: {} };
export const INVALID_ARGUMENTS_RULE = "invalid-arguments";
/** The rule named when a call names a server or tool no worker registered: nothing to decide on. */
export const UNKNOWN_TOOL_RULE = "unknown-tool";

/** The rule a refusal before evaluation is filed under, by its error code. */
function refusalRule(code: ErrorCode): string {
  if (code === ErrorCode.UNAUTHENTICATED) return UNAUTHENTICATED_RULE;
  if (code === ErrorCode.UNKNOWN_SERVER || code === ErrorCode.UNKNOWN_TOOL) return UNKNOWN_TOOL_RULE;
  return INVALID_ARGUMENTS_RULE;
}
export const RATE_LIMIT_RULE_SUFFIX = "(rate limit)";

export interface DecideDependencies {
  policy: PolicyStore;
  tokens: TokenVerifier;
  /** What the workers registered: tools' descriptors, and each server's governance for reads, prompts and sampling. */
  registry: RegistryView;
  validator: JsonSchemaValidator;
  grants: GrantSigner;
  rates: RateLimiter;
  anomalies: AnomalyDetector;
  audit: AuditLog;
  log: Logger;
  /** The caller's region when the token names none. */
  defaultRegion: string;
  /** Lifetime of the run tokens issued when a run starts. */
  runTokenTtlMs: number;
}

/**
 * Answers one decision request: identify the caller, check the arguments against the tool's
 * inputSchema, evaluate, enforce the rate limit, sign a grant for an allowed tool call, audit, reply.
 */
export async function decide(
  deps: DecideDependencies,
  request: PolicyDecisionRequest,
  authorization: string | undefined,
  channel: DecisionChannel = "public",
): Promise<PolicyDecision> {
  const started = performance.now();
  const policy = deps.policy.active;
  const decisionId = randomUUID();
  let principal = ANONYMOUS;
  let verdict: Verdict;
  let refusal: LoomError | undefined;
  let parentRun: string | undefined;
  try {
    const identified = await deps.tokens.identify(authorization, request, channel);
    principal = identified.principal;
    parentRun = identified.runToken?.run;
    const facts = await factsFor(deps, principal, request);
    verdict = evaluate(policy, principal, request, facts);
    verdict = enforceRateLimit(deps, principal, request, verdict);
  } catch (error) {
    if (!(error instanceof LoomError)) throw error;
    verdict = { effect: PolicyEffect.DENY, rule: refusalRule(error.code), reason: error.message };
    if (error.code !== ErrorCode.UNAUTHENTICATED) refusal = error;
  }
  const allowedCall =
    verdict.effect === PolicyEffect.ALLOW &&
    // Actions on a server's target are carried out by a worker, so an allow comes with a grant it checks.
    TARGET_ACTIONS.has(request.action) &&
    request.resource.tool !== undefined;
  const obligations = verdict.obligations ?? { maskFields: [], maskPii: [], maskPatterns: [] };
  const argsDigest = digestOf(request.arguments ?? {});
  const grant =
    allowedCall && request.resource.tool !== undefined
      ? await deps.grants.sign({
          sub: principal.id,
          run: request.runId ?? "",
          step: request.stepId ?? "",
          action: request.action,
          tool: request.resource.tool,
          args: argsDigest,
          obligations,
          attempt: request.attempt ?? 0,
          rule: verdict.rule,
          roles: principal.roles,
          attributes: principal.attributes,
          jti: decisionId,
        })
      : undefined;
  const issued =
    verdict.effect === PolicyEffect.ALLOW &&
    request.action === "workflow.start" &&
    request.runId !== undefined &&
    request.runWorkflow !== undefined
      ? deps.grants.signRunToken(
          principal,
          {
            runId: request.runId,
            workflow: request.runWorkflow,
            ...(parentRun === undefined ? {} : { parent: parentRun }),
          },
          deps.runTokenTtlMs,
        )
      : undefined;
  // The run's steps present it next, to this replica most often: no need to verify its own signature.
  if (issued !== undefined) deps.tokens.issued(issued);
  const runToken = issued?.token;
  const recorded = deps.audit.append({
    kind: AuditKind.POLICY_DECISION,
    principal: principal.id,
    action: request.action,
    resource: describeTarget(request),
    effect: verdict.effect,
    rule: verdict.rule,
    reason: verdict.reason,
    latencyMs: Math.round((performance.now() - started) * 1000) / 1000,
    ...(request.arguments === undefined ? {} : { argsDigest }),
    ...(request.runId === undefined ? {} : { runId: request.runId }),
    ...(request.stepId === undefined ? {} : { stepId: request.stepId }),
    ...(grant === undefined ? {} : { grant }),
  });
  // A grant leaves only once its decision's record is stored (with this writer's batch), so no
  // call ever runs without its decision durable, whichever process dies when. Any other decision's
  // record goes out with the next batch, off the reply path.
  if (grant !== undefined) await recorded;
  else
    recorded.catch((error: unknown) => deps.log.error({ err: error }, "could not store a decision record"));
  // Every decision is in the audit trail; a log line per decision is for debugging.
  deps.log.debug(
    {
      action: request.action,
      resource: describeTarget(request),
      effect: verdict.effect,
      rule: verdict.rule,
      run_id: request.runId,
      principal: principal.id,
    },
    "policy decision",
  );
  if (refusal !== undefined) throw refusal;
  if (allowedCall && request.resource.tool !== undefined) {
    deps.anomalies.observe(principal.id, request.resource.tool, request.runId);
  }
  return {
    decisionId,
    effect: verdict.effect,
    rule: verdict.rule,
    reason: verdict.reason,
    principal,
    policyVersion: policy.version,
    ...(verdict.effect === PolicyEffect.ALLOW && verdict.obligations !== undefined
      ? { obligations: verdict.obligations }
      : {}),
    ...(grant === undefined ? {} : { grant }),
    ...(runToken === undefined ? {} : { runToken }),
  };
}

/**
 * `loom policy explain`: how every rule judges the request for the caller's own verified principal,
 * and the decision they make. Nothing is granted, counted or audited. A caller whose token is
 * refused learns nothing of the policy: the refusal is thrown as UNAUTHENTICATED, saying why.
 */
export async function explain(
  deps: DecideDependencies,
  request: PolicyDecisionRequest,
  authorization: string | undefined,
): Promise<PolicyExplanation> {
  const policy = deps.policy.active;
  const { principal } = await deps.tokens.identify(authorization, request, "public");
  let verdict: Verdict;
  let facts: DecisionFacts = {};
  try {
    facts = await factsFor(deps, principal, request);
    verdict = evaluate(policy, principal, request, facts);
  } catch (error) {
    if (!(error instanceof LoomError)) throw error;
    verdict = { effect: PolicyEffect.DENY, rule: refusalRule(error.code), reason: error.message };
  }
  return {
    decision: {
      decisionId: randomUUID(),
      effect: verdict.effect,
      rule: verdict.rule,
      reason: verdict.reason,
      principal,
      policyVersion: policy.version,
      ...(verdict.obligations === undefined ? {} : { obligations: verdict.obligations }),
    },
    rules: judgeRules(policy, principal, request, facts).map(({ rule, matched, why }) => ({
      name: rule.name,
      effect: rule.effect,
      matched,
      why,
    })),
  };
}

/**
 * The target server's governance facts: the tool's descriptor for a call (after checking the
 * arguments against its inputSchema, unless told not to: a dry run for a listing knows no
 * arguments), the server's catalog entry for a read, a prompt or a sampling request, so
 * classification and residency rules judge every way data leaves a server alike.
 */
export async function factsFor(
  deps: Pick<DecideDependencies, "registry" | "validator" | "defaultRegion">,
  principal: Principal,
  request: PolicyDecisionRequest,
  options: { checkArguments?: boolean } = {},
): Promise<DecisionFacts> {
  const destinationRegion = principal.attributes.region ?? deps.defaultRegion;
  const target = request.resource.tool;
  if (!TARGET_ACTIONS.has(request.action) || target === undefined) return { destinationRegion };
  let governance: Governance | undefined;
  if (request.action === "tools.call") {
    const descriptor = await deps.registry.tool(target);
    if (descriptor === undefined) {
      // A dry run for a listing only asks about registered tools; a call names what it likes.
      if (options.checkArguments === false) return { destinationRegion };
      throw await deps.registry.unregistered(target);
    }
    if (options.checkArguments !== false) {
      deps.validator.assertValid(descriptor.inputSchema, request.arguments ?? {}, `arguments of ${target}`);
    }
    governance = descriptor.governance;
  } else {
    const server = target.includes(".") ? splitToolName(target).server : target;
    governance = (await deps.registry.server(server))?.governance;
  }
  if (governance === undefined) return { destinationRegion };
  return {
    destinationRegion,
    tool: {
      classification: governance.data_classification,
      ...(governance.exec === undefined ? {} : { exec: governance.exec }),
      ...(governance.region === undefined ? {} : { region: governance.region }),
    },
  };
}

function enforceRateLimit(
  deps: DecideDependencies,
  principal: Principal,
  request: PolicyDecisionRequest,
  verdict: Verdict,
): Verdict {
  if (verdict.effect !== PolicyEffect.ALLOW || verdict.rateLimit === undefined) return verdict;
  const key = `${principal.id}\u0000${describeTarget(request)}`;
  if (deps.rates.tryAcquire(key, verdict.rateLimit)) return verdict;
  const { max, per } = verdict.rateLimit;
  return {
    effect: PolicyEffect.DENY,
    rule: `${verdict.rule} ${RATE_LIMIT_RULE_SUFFIX}`,
    reason: `rule "${verdict.rule}" allows ${principal.id} at most ${max} calls of ${describeTarget(request)} per ${per / 1000} s`,
  };
}
