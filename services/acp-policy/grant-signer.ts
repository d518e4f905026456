import { generateKeyPairSync, type KeyObject } from "node:crypto";
import type { KV } from "@nats-io/kv";
import { calculateJwkThumbprint, type JWK } from "jose";
import {
  GRANT_AUDIENCE,
  GRANT_ISSUER,
  GRANT_TYPE,
  type GrantClaims,
  type Principal,
  RUN_TOKEN_AUDIENCE,
  RUN_TOKEN_TYPE,
  type RunTokenClaims,
} from "../../schemas/policy.ts";
import { signEd25519Jwt } from "../kit/ed25519-jwt.ts";
import { retryBrokerFailures } from "../kit/index.ts";

/** A run token as its signer made it: the token, whom it names, its claims and when it expires. */
export interface IssuedRunToken {
  token: string;
  sub: string;
  claims: RunTokenClaims;
  expiresAtMs: number;
}

/**
 * Signs grants with an Ed25519 key this replica makes at start and never writes to disk. Its public
 * half goes to KV `loom_grant_keys` under its key id, where workers look up the `kid` of each grant:
 * replicas and restarts each bring their own key, and nothing has to be copied between machines.
 */
export class GrantSigner {
  readonly #privateKey: KeyObject;
  readonly kid: string;
  readonly #ttlSeconds: number;

  private constructor(privateKey: KeyObject, kid: string, ttlMs: number) {
    this.#privateKey = privateKey;
    this.kid = kid;
    this.#ttlSeconds = Math.max(1, Math.round(ttlMs / 1000));
  }

  static async create(keys: KV, ttlMs: number): Promise<GrantSigner> {
    const { privateKey, publicKey } = generateKeyPairSync("ed25519");
    const publicJwk = publicKey.export({ format: "jwk" }) as JWK;
    const kid = await calculateJwkThumbprint(publicJwk);
    await retryBrokerFailures(() =>
      keys.put(kid, JSON.stringify({ ...publicJwk, kid, alg: "EdDSA", use: "sig" })),
    );
    return new GrantSigner(privateKey, kid, ttlMs);
  }

  /**
   * A token for `principal` that only ever speaks for run `runId` of one workflow version, and only
   * when the orchestrator presents it (see `PolicyDecision.runToken`), with what it says.
   */
  signRunToken(
    principal: Principal,
    run: { runId: string; workflow: { id: string; version: number }; parent?: string },
    ttlMs: number,
  ): IssuedRunToken {
    const claims: RunTokenClaims = {
      run: run.runId,
      wf: run.workflow.id,
      wfv: run.workflow.version,
      ...(run.parent === undefined ? {} : { parent: run.parent }),
      roles: principal.roles,
      attributes: principal.attributes,
    };
    const ttlSeconds = Math.max(1, Math.round(ttlMs / 1000));
    // Read before signing: the token's own `exp` is this or a second later, never earlier.
    const expiresAtMs = (Math.floor(Date.now() / 1000) + ttlSeconds) * 1000;
    const token = signEd25519Jwt(
      { ...claims, iss: GRANT_ISSUER, aud: RUN_TOKEN_AUDIENCE, sub: principal.id },
      { type: RUN_TOKEN_TYPE, kid: this.kid, ttlSeconds, privateKey: this.#privateKey },
    );
    return { token, sub: principal.id, claims, expiresAtMs };
  }

  sign(claims: GrantClaims): string {
    const { sub, jti, ...bound } = claims;
    return signEd25519Jwt(
      { ...bound, iss: GRANT_ISSUER, aud: GRANT_AUDIENCE, sub, jti },
      { type: GRANT_TYPE, kid: this.kid, ttlSeconds: this.#ttlSeconds, privateKey: this.#privateKey },
    );
  }
}
