import type { KV } from "@nats-io/kv";
import { type CryptoKey, errors, importJWK, type JWK, jwtVerify } from "jose";
import type { Message } from "../../schemas/a2a.ts";
import { AuditKind } from "../../schemas/audit.ts";
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
import { LoomError, toWireError } from "./errors.ts";
import type { Logger } from "./logger.ts";

/** A few seconds of clock difference between acp-policy and this worker. */
const CLOCK_SKEW_SECONDS = 5;

/** What the worker is about to do, which the grant must name exactly. */
export interface GrantedOperation {
  action: PolicyAction;
  /** `<server>.<tool>` (or prompt, or `<server>.<uri>`), as policy saw it. */
  target: string;
  arguments: Record<string, unknown>;
  runId: string | undefined;
  stepId: string | undefined;
}

/**
 * An agent (the mcp-worker, the llm agent) trusts nothing on the bus but grants: a task runs only
 * with a grant acp-policy signed for this run, step, operation and these exact arguments, and that
 * has not expired. Keys are looked up by `kid` in KV `loom_grant_keys`, where each acp-policy
 * replica publishes its own. Every refusal is audited. The claims of each admitted task are kept
 * for its audit record, whose kind is `executionKind` (tool executions by default).
 */
export class GrantCheck {
  readonly #keys: KV;
  readonly #audit: AuditLog;
  readonly #log: Logger;
  readonly #cache = new Map<string, CryptoKey | Uint8Array>();
  readonly #admitted = new WeakMap<Message, GrantClaims>();
  readonly #executionKind: AuditKind;

  constructor(options: { keys: KV; audit: AuditLog; log: Logger; executionKind?: AuditKind }) {
    this.#keys = options.keys;
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
      const claims = await this.#verify(grant, operation);
      this.#admitted.set(message, claims);
      return claims;
    } catch (error) {
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
        argsDigest: digestOf(operation.arguments),
        ...(operation.runId === undefined ? {} : { runId: operation.runId }),
        ...(operation.stepId === undefined ? {} : { stepId: operation.stepId }),
      });
      this.#log.warn(
        { tool: operation.target, run_id: operation.runId, reason: refusal.message },
        "task refused",
      );
      throw refusal;
    }
  }

  /**
   * Runs a task and appends its execution record: who, what, outcome, latency and digests. What
   * was run is read from the grant, which binds the target and the arguments' digest.
   */
  async audited<T extends { artifacts?: unknown }>(message: Message, work: () => Promise<T>): Promise<T> {
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
        await this.#audit.append({
          kind: this.#executionKind,
          principal: claims.sub,
          action: claims.action,
          resource: claims.tool,
          outcome,
          latencyMs: Math.round((performance.now() - started) * 1000) / 1000,
          argsDigest: claims.args,
          ...(result === undefined ? {} : { resultDigest: digestOf(result.artifacts ?? null) }),
          ...(claims.run === "" ? {} : { runId: claims.run }),
          ...(claims.step === "" ? {} : { stepId: claims.step }),
        });
      }
    }
  }

  async #verify(grant: string | undefined, operation: GrantedOperation): Promise<GrantClaims> {
    if (grant === undefined || grant === "") {
      throw new LoomError(ErrorCode.GRANT_REFUSED, "the task carries no grant from acp-policy");
    }
    let payload: unknown;
    try {
      ({ payload } = await jwtVerify(grant, (header) => this.#key(header.kid), {
        issuer: GRANT_ISSUER,
        audience: GRANT_AUDIENCE,
        algorithms: ["EdDSA"],
        typ: GRANT_TYPE,
        clockTolerance: CLOCK_SKEW_SECONDS,
        requiredClaims: ["exp", "jti", "sub"],
      }));
    } catch (cause) {
      const why = cause instanceof errors.JWTExpired ? "the grant has expired" : "the grant does not verify";
      throw new LoomError(ErrorCode.GRANT_REFUSED, why, { cause });
    }
    const parsed = GrantClaimsSchema.safeParse(payload);
    if (!parsed.success) throw new LoomError(ErrorCode.GRANT_REFUSED, "the grant's claims are malformed");
    const claims = parsed.data;
    const mismatch =
      claims.action !== operation.action || claims.tool !== operation.target
        ? `the grant is for ${claims.action} ${claims.tool}, not ${operation.action} ${operation.target}`
        : claims.args !== digestOf(operation.arguments)
          ? "the grant is for other arguments"
          : claims.run !== (operation.runId ?? "") || claims.step !== (operation.stepId ?? "")
            ? "the grant is for another run or step"
            : undefined;
    if (mismatch !== undefined) throw new LoomError(ErrorCode.GRANT_REFUSED, mismatch);
    return claims;
  }

  async #key(kid: string | undefined): Promise<CryptoKey | Uint8Array> {
    if (kid === undefined || !/^[A-Za-z0-9_-]{1,128}$/.test(kid)) {
      throw new LoomError(ErrorCode.GRANT_REFUSED, "the grant names no usable key id");
    }
    const cached = this.#cache.get(kid);
    if (cached !== undefined) return cached;
    const entry = await this.#keys.get(kid);
    if (entry === null || entry.operation !== "PUT") {
      throw new LoomError(ErrorCode.GRANT_REFUSED, "the grant is signed by an unknown key");
    }
    const key = await importJWK(JSON.parse(entry.string()) as JWK, "EdDSA");
    this.#cache.set(kid, key);
    return key;
  }
}
