import { type KeyObject, randomUUID } from "node:crypto";
import type { KV } from "@nats-io/kv";
import type { Message } from "../../schemas/a2a.ts";
import { AuditKind, type ExecutedCall } from "../../schemas/audit.ts";
import { ErrorCode } from "../../schemas/errors.ts";
import {
  GRANT_AUDIENCE,
  GRANT_ISSUER,
  GRANT_TYPE,
  type GrantClaims,
  GrantClaimsSchema,
  type PolicyAction,
} from "../../schemas/policy.ts";
import type { AuditLog } from "./audit-chain.ts";
import { digestOf } from "./digest.ts";
import { ed25519PublicKey, JwtExpiredError, verifyEd25519Jwt } from "./ed25519-jwt.ts";
import { isBrokerFailure, LoomError, toWireError } from "./errors.ts";
import { casWrite } from "./kv-cas.ts";
import type { Logger } from "./logger.ts";

/** A few seconds of clock difference between acp-policy and this worker. */
const CLOCK_SKEW_SECONDS = 5;
/** How long after its grant expired a call may still present it for follow-ups (sampling, elicitation). */
export const FOLLOW_UP_SECONDS = 600;
/** How long a used grant's id is remembered: beyond the longest LOOM_GRANT_TTL acp-policy accepts. */
export const GRANT_USE_MEMORY_MS = 30 * 60_000;

/** What the worker is about to do, which the grant must name exactly. */
export interface GrantedOperation {
  action: PolicyAction;
  /** `<server>.<tool>` (or prompt, or `<server>.<uri>`), as policy saw it. */
  target: string;
  arguments: Record<string, unknown>;
  runId: string | undefined;
  stepId: string | undefined;
  /** The step attempt the task is for; 0 for a task outside a workflow step. */
  attempt: number;
}

/** What a grant authorises, read back from its claims (its arguments are known by their digest only). */
function operationOf(claims: GrantClaims): GrantedOperation {
  return {
    action: claims.action,
    target: claims.tool,
    arguments: {},
    runId: claims.run === "" ? undefined : claims.run,
    stepId: claims.step === "" ? undefined : claims.step,
    attempt: claims.attempt,
  };
}

/** acp-policy's grant-signing public keys, by `kid`. */
export type GrantKeys = (kid: string | undefined) => Promise<KeyObject>;

/** Looks up acp-policy's grant keys by `kid` in KV `loom_grant_keys`, each imported once. */
export function grantKeySource(keys: KV): GrantKeys {
  const cache = new Map<string, KeyObject>();
  return async (kid) => {
    if (kid === undefined || !/^[A-Za-z0-9_-]{1,128}$/.test(kid)) {
      throw new LoomError(ErrorCode.GRANT_REFUSED, "the grant names no usable key id");
    }
    const cached = cache.get(kid);
    if (cached !== undefined) return cached;
    const entry = await keys.get(kid);
    if (entry === null || entry.operation !== "PUT") {
      throw new LoomError(ErrorCode.GRANT_REFUSED, "the grant is signed by an unknown key");
    }
    let key: KeyObject;
    try {
      key = ed25519PublicKey(JSON.parse(entry.string()));
    } catch (cause) {
      throw new LoomError(ErrorCode.GRANT_REFUSED, "the grant's key is not an Ed25519 key", { cause });
    }
    cache.set(kid, key);
    return key;
  };
}

/**
 * The claims of a grant acp-policy signed: signature, issuer, audience, type, expiry (with
 * `toleranceSeconds` of grace) and shape. What it is for is the caller's to compare.
 */
export async function verifyGrant(
  grant: string | undefined,
  key: GrantKeys,
  toleranceSeconds = CLOCK_SKEW_SECONDS,
): Promise<GrantClaims> {
  if (grant === undefined || grant === "") {
    throw new LoomError(ErrorCode.GRANT_REFUSED, "the task carries no grant from acp-policy");
  }
  let payload: unknown;
  try {
    payload = await verifyEd25519Jwt(grant, key, {
      issuer: GRANT_ISSUER,
      audience: GRANT_AUDIENCE,
      type: GRANT_TYPE,
      clockToleranceSeconds: toleranceSeconds,
      requiredClaims: ["jti", "sub"],
    });
  } catch (cause) {
    if (cause instanceof LoomError) throw cause;
    const why = cause instanceof JwtExpiredError ? "the grant has expired" : "the grant does not verify";
    throw new LoomError(ErrorCode.GRANT_REFUSED, why, { cause });
  }
  const parsed = GrantClaimsSchema.safeParse(payload);
  if (!parsed.success) throw new LoomError(ErrorCode.GRANT_REFUSED, "the grant's claims are malformed");
  return parsed.data;
}

/**
 * A grant's one use as a step ledger records it: in the claim of the step attempt it is bound to
 * (see the mcp-worker's StepResults), so the claim and the use are one write.
 */
export interface StepGrant {
  /** The grant's id (`jti`, its decision's id). */
  id: string;
  /** Refuses the grant as used already (an earlier claim of its attempt carries it): audited, not run. */
  refuseReuse(): Promise<LoomError>;
}

/**
 * An agent (the mcp-worker, the llm agent) trusts nothing on the bus but grants: a task runs only
 * with a grant acp-policy signed for this run, step, attempt, operation and these exact arguments,
 * that has not expired and has not been used. Keys are looked up by `kid` in KV `loom_grant_keys`,
 * where each acp-policy replica publishes its own. Every refusal is audited. Right before the work
 * the grant is used, once: a grant bound to a step attempt in that attempt's claim (`stepGrant`),
 * any other by creating its id in KV `loom_grant_uses` (`consume`); a second use finds it there
 * and is refused. The decision a grant carries is on record before the grant exists: acp-policy
 * stores its decision record before it lets a grant out.
 */
export class GrantCheck {
  readonly #key: GrantKeys;
  readonly #uses: KV;
  readonly #audit: AuditLog;
  readonly #log: Logger;
  readonly #admitted = new WeakMap<Message, GrantClaims>();
  readonly #executionKind: AuditKind;

  constructor(options: { keys: KV; uses: KV; audit: AuditLog; log: Logger; executionKind?: AuditKind }) {
    this.#key = grantKeySource(options.keys);
    this.#uses = options.uses;
    this.#audit = options.audit;
    this.#log = options.log;
    this.#executionKind = options.executionKind ?? AuditKind.TOOL_EXECUTION;
  }

  async admit(
    message: Message,
    grant: string | undefined,
    operation: GrantedOperation,
  ): Promise<GrantClaims> {
    try {
      const claims = await verifyGrant(grant, this.#key);
      const mismatch =
        claims.action !== operation.action || claims.tool !== operation.target
          ? `the grant is for ${claims.action} ${claims.tool}, not ${operation.action} ${operation.target}`
          : claims.args !== digestOf(operation.arguments)
            ? "the grant is for other arguments"
            : claims.run !== (operation.runId ?? "") || claims.step !== (operation.stepId ?? "")
              ? "the grant is for another run or step"
              : claims.attempt !== operation.attempt
                ? `the grant is for attempt ${claims.attempt}, not ${operation.attempt}`
                : undefined;
      if (mismatch !== undefined) throw new LoomError(ErrorCode.GRANT_REFUSED, mismatch);
      this.#admitted.set(message, claims);
      return claims;
    } catch (error) {
      throw await this.#refuse(operation, error);
    }
  }

  /**
   * Uses the message's admitted grant, once: call right before the work. A grant already used
   * (the same task re-sent, under any attempt number) is refused and audited. For a grant bound to
   * a step attempt, whose use its claim records, see `stepGrant`.
   */
  async consume(message: Message): Promise<void> {
    const claims = this.#admittedOf(message);
    // The use names this consumer, so a create whose answer a broker failure lost is recognised
    // as this one's (casWrite) and never as another consumer's.
    const use = new TextEncoder().encode(`${new Date().toISOString()} ${randomUUID()}`);
    let written: number | undefined;
    try {
      written = await casWrite(this.#uses, claims.jti, use, undefined);
    } catch (cause) {
      this.#admitted.delete(message);
      // A broker that stayed away is worth another attempt (BROKER_UNAVAILABLE), not a refusal.
      if (isBrokerFailure(cause)) throw cause;
      throw await this.#refuse(operationOf(claims), cause, claims.args);
    }
    if (written === undefined) throw await this.#refuseReuse(message, claims);
  }

  /** The message's admitted grant, to be used in the claim of the step attempt it is bound to. */
  stepGrant(message: Message): StepGrant {
    const claims = this.#admittedOf(message);
    return { id: claims.jti, refuseReuse: () => this.#refuseReuse(message, claims) };
  }

  #admittedOf(message: Message): GrantClaims {
    const admitted = this.#admitted.get(message);
    if (admitted === undefined) throw new LoomError(ErrorCode.GRANT_REFUSED, "no grant was admitted");
    return admitted;
  }

  /** A used grant presented again: audited as refused, and no execution is recorded for it. */
  #refuseReuse(message: Message, claims: GrantClaims): Promise<LoomError> {
    this.#admitted.delete(message);
    return this.#refuse(
      operationOf(claims),
      new LoomError(ErrorCode.GRANT_REFUSED, "the grant has already been used"),
      claims.args,
    );
  }

  /** Audits a refusal and returns it as GRANT_REFUSED. */
  async #refuse(operation: GrantedOperation, error: unknown, argsDigest?: string): Promise<LoomError> {
    const refusal =
      error instanceof LoomError && error.code === ErrorCode.GRANT_REFUSED
        ? error
        : new LoomError(ErrorCode.GRANT_REFUSED, "the grant could not be checked", { cause: error });
    await this.#audit.append({
      kind: AuditKind.GRANT_REFUSED,
      principal: "unknown",
      action: operation.action,
      resource: operation.target,
      outcome: ErrorCode.GRANT_REFUSED,
      reason: refusal.message,
      argsDigest: argsDigest ?? digestOf(operation.arguments),
      ...(operation.runId === undefined ? {} : { runId: operation.runId }),
      ...(operation.stepId === undefined ? {} : { stepId: operation.stepId }),
    });
    this.#log.warn(
      { tool: operation.target, run_id: operation.runId, reason: refusal.message },
      "task refused",
    );
    return refusal;
  }

  /**
   * Runs a task and appends its execution record: who, what, outcome, latency, digests, and the
   * MCP call it made (`executed`, filled in as the call goes out). What was run is read from the
   * grant, which binds the target and the arguments' digest. A task the step ledger answered with
   * an outcome stored before (`executed.replayed`: re-sent, or replayed with a spent grant) ran
   * nothing: its record is a `tool.replay`, never an execution. The record is made once the answer
   * has left (`afterReply`, when the task is served on the bus) and goes out with this writer's
   * next batch; the answer never waits for it.
   */
  async audited<T extends { artifacts?: unknown }>(
    message: Message,
    work: () => Promise<T>,
    options: { executed?: ExecutedCall; afterReply?: (record: () => void) => void } = {},
  ): Promise<T> {
    const started = performance.now();
    let outcome = "ok";
    let result: T | undefined;
    try {
      result = await work();
      return result;
    } catch (error) {
      outcome = toWireError(error).code;
      throw error;
    } finally {
      const claims = this.#admitted.get(message);
      // A refused task is already audited as such; only admitted ones are executions.
      if (claims !== undefined) {
        const latencyMs = Math.round((performance.now() - started) * 1000) / 1000;
        const answer = result;
        const { replayed, ...call } = options.executed ?? {};
        const record = () =>
          this.#audit
            .append({
              kind: replayed === true ? AuditKind.TOOL_REPLAY : this.#executionKind,
              principal: claims.sub,
              action: claims.action,
              resource: claims.tool,
              outcome,
              latencyMs,
              argsDigest: claims.args,
              ...(answer === undefined ? {} : { resultDigest: digestOf(answer.artifacts ?? null) }),
              ...(claims.run === "" ? {} : { runId: claims.run }),
              ...(claims.step === "" ? {} : { stepId: claims.step }),
              ...call,
            })
            .catch((error: unknown) =>
              this.#log.error({ err: error }, "could not store an execution record"),
            );
        if (options.afterReply === undefined) void record();
        else options.afterReply(() => void record());
      }
    }
  }
}
