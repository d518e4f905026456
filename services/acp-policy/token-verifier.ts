import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import type { KV } from "@nats-io/kv";
import {
  createLocalJWKSet,
  createRemoteJWKSet,
  decodeProtectedHeader,
  errors,
  type JWTPayload,
  type JWTVerifyGetKey,
  jwtVerify,
} from "jose";
import { ErrorCode } from "../../schemas/errors.ts";
import {
  GRANT_ISSUER,
  GRANT_TYPE,
  type GrantClaims,
  PolicyAction,
  type PolicyDecisionRequest,
  type Principal,
  RUN_TOKEN_AUDIENCE,
  RUN_TOKEN_TYPE,
  type RunTokenClaims,
  RunTokenClaimsSchema,
} from "../../schemas/policy.ts";
import { ensureDevIssuerKey } from "../kit/dev-issuer.ts";
import { JwtExpiredError, JwtInvalidError, verifyEd25519Jwt } from "../kit/ed25519-jwt.ts";
import { FOLLOW_UP_SECONDS, type GrantKeys, grantKeySource, verifyGrant } from "../kit/grant-check.ts";
import { LoomError } from "../kit/index.ts";
import type { IssuedRunToken } from "./grant-signer.ts";

export interface TokenVerifierOptions {
  /** Where keys come from: a JWKS URL, a JWKS file, or the dev issuer key in the data dir. */
  keys: { jwksUrl: string; cooldownMs?: number } | { jwksFile: string } | { devDataDir: string };
  issuer: string;
  audience: string;
  algorithms: string[];
  rolesClaim: string;
  attributeClaims: string[];
  clockSkewMs: number;
  /** KV `loom_grant_keys`: acp-policy's own keys, which sign run tokens and grants. */
  runTokenKeys?: KV;
}

/**
 * Where a decision was asked: `public` is `loom.v1.policy.decide`, open to every caller with a
 * token of their own; `run` is `loom.v1.policy.decide.run`, which only the orchestrator's NATS user
 * may publish to, and the only place a run token is accepted.
 */
export type DecisionChannel = "public" | "run";

/** Who a decision is for, and the run token that said so, when one did. */
export interface Identified {
  principal: Principal;
  runToken?: RunTokenClaims;
}

export interface TokenVerifier {
  /**
   * The principal of a verified access token (an `Authorization` header value); UNAUTHENTICATED
   * otherwise. Run tokens and grants never pass here.
   */
  verify(authorization: string | undefined): Promise<Principal>;
  /**
   * The principal a decision is for. On the public channel: an access token, or, for a server's
   * sampling request during a call (`llm.sample`), that call's grant (same run and step). On the
   * run channel: a run token, for its own run and workflow version only; or, for `workflow.start`
   * of a child run a delegate step submitted, the parent's run token.
   */
  identify(
    authorization: string | undefined,
    request: PolicyDecisionRequest,
    channel: DecisionChannel,
  ): Promise<Identified>;
  /** A run token this replica has just signed: taken at its word until it expires, as one verified. */
  issued(runToken: IssuedRunToken): void;
}

/** Verifies OAuth 2.0 access tokens (JWT): signature, algorithm allow-list, iss, aud, exp, nbf. */
export async function createTokenVerifier(options: TokenVerifierOptions): Promise<TokenVerifier> {
  const keys = await keySource(options.keys);
  // Run tokens and grants are both signed with a replica's grant key, by `kid` in KV `loom_grant_keys`.
  const grantKeys = options.runTokenKeys === undefined ? undefined : grantKeySource(options.runTokenKeys);
  const verifiedRunTokens = new VerifiedTokens<VerifiedRunToken>();
  const verifiedAccessTokens = new VerifiedTokens<{ principal: Principal; key: unknown }>();
  const verifyAccessToken = async (token: string): Promise<Principal> => {
    if (tokenType(token) === RUN_TOKEN_TYPE || tokenType(token) === GRANT_TYPE) {
      throw new LoomError(
        ErrorCode.UNAUTHENTICATED,
        "token refused: a run token or grant is no access token",
      );
    }
    // A token verified before is taken at its word while its key is still the one that verified it.
    const known = verifiedAccessTokens.get(token);
    if (known !== undefined && (await currentKey(keys, token)) === known.key) return known.principal;
    let payload: JWTPayload;
    let key: unknown;
    try {
      ({ payload, key } = await jwtVerify(token, keys, {
        issuer: options.issuer,
        audience: options.audience,
        algorithms: options.algorithms,
        clockTolerance: Math.round(options.clockSkewMs / 1000),
        requiredClaims: ["sub", "exp"],
      }));
    } catch (cause) {
      throw new LoomError(ErrorCode.UNAUTHENTICATED, `token refused: ${describeJoseError(cause)}`, {
        cause,
      });
    }
    const principal = principalFrom(payload, options);
    const untilMs = Math.min((payload.exp ?? 0) * 1000, Date.now() + ACCESS_TOKEN_RECHECK_MS);
    verifiedAccessTokens.set(token, { principal, key }, untilMs);
    return principal;
  };
  return {
    issued: ({ token, sub, claims, expiresAtMs }) =>
      verifiedRunTokens.set(token, { sub, claims }, expiresAtMs),
    verify: async (authorization) => verifyAccessToken(bearer(authorization)),
    async identify(authorization, request, channel) {
      const token = bearer(authorization);
      const type = tokenType(token);
      if (type === RUN_TOKEN_TYPE) {
        if (channel !== "run" || grantKeys === undefined) {
          throw new LoomError(
            ErrorCode.UNAUTHENTICATED,
            "run token refused: only the orchestrator presents a run token, for its own run",
          );
        }
        return verifyRunToken(token, grantKeys, request, verifiedRunTokens);
      }
      if (type === GRANT_TYPE) {
        if (channel !== "public" || grantKeys === undefined || request.action !== PolicyAction.LLM_SAMPLE) {
          throw new LoomError(
            ErrorCode.UNAUTHENTICATED,
            "grant refused: a grant speaks only for a sampling request during its own call",
          );
        }
        return { principal: await principalOfGrant(token, grantKeys, request) };
      }
      return { principal: await verifyAccessToken(token) };
    },
  };
}

function bearer(authorization: string | undefined): string {
  if (authorization === undefined || authorization === "") {
    throw new LoomError(ErrorCode.UNAUTHENTICATED, "no token presented; pass --token or set LOOM_TOKEN");
  }
  return authorization.replace(/^Bearer\s+/i, "");
}

/**
 * The key `keys` gives for the token's header now, or undefined when it gives none (the key was
 * withdrawn from the JWKS, for one).
 */
async function currentKey(keys: JWTVerifyGetKey, token: string): Promise<unknown> {
  const [header = "", payload = "", signature = ""] = token.split(".");
  try {
    const { alg, ...rest } = decodeProtectedHeader(token);
    if (alg === undefined) return undefined;
    return await keys({ ...rest, alg }, { protected: header, payload, signature });
  } catch {
    return undefined;
  }
}

function tokenType(token: string): unknown {
  try {
    return decodeProtectedHeader(token).typ;
  } catch {
    return undefined;
  }
}

/** A call's grant, presented for a server's sampling request during that call. */
async function principalOfGrant(
  grant: string,
  keys: ReturnType<typeof grantKeySource>,
  request: PolicyDecisionRequest,
): Promise<Principal> {
  let claims: GrantClaims;
  try {
    claims = await verifyGrant(grant, keys, FOLLOW_UP_SECONDS);
  } catch (cause) {
    throw new LoomError(ErrorCode.UNAUTHENTICATED, `grant refused: ${(cause as Error).message}`, { cause });
  }
  if (claims.run !== (request.runId ?? "") || claims.step !== (request.stepId ?? "")) {
    throw new LoomError(ErrorCode.UNAUTHENTICATED, "grant refused: it is for another run or step");
  }
  return { id: claims.sub, roles: claims.roles, attributes: claims.attributes };
}

/** How many verified tokens of each kind acp-policy remembers: about as many runs as are in flight. */
const VERIFIED_TOKENS = 10_000;
/**
 * How long an access token's verification is trusted before its signature is checked again. In
 * between, its key must still be the one the JWKS gives for it: a withdrawn key ends it at once.
 */
const ACCESS_TOKEN_RECHECK_MS = 30_000;

/** A run token's verified claims. */
interface VerifiedRunToken {
  sub: string;
  claims: RunTokenClaims;
}

/**
 * Tokens verified before, by the SHA-256 of the token, with what they said: a run presents the
 * same run token at every step, a client the same access token at every call, and the signature
 * is checked at the first only. Bounded (the oldest is forgotten first); an entry ends at its
 * token's expiry at the latest, so an expired token is verified again, and refused.
 */
class VerifiedTokens<T> {
  readonly #entries = new Map<string, { value: T; untilMs: number }>();

  get(token: string): T | undefined {
    const key = tokenHash(token);
    const entry = this.#entries.get(key);
    if (entry === undefined) return undefined;
    if (entry.untilMs > Date.now()) return entry.value;
    this.#entries.delete(key);
    return undefined;
  }

  set(token: string, value: T, untilMs: number): void {
    if (this.#entries.size >= VERIFIED_TOKENS) {
      const oldest = this.#entries.keys().next();
      if (oldest.done !== true) this.#entries.delete(oldest.value);
    }
    this.#entries.set(tokenHash(token), { value, untilMs });
  }
}

function tokenHash(token: string): string {
  return createHash("sha256").update(token).digest("base64url");
}

async function verifiedRunToken(
  token: string,
  keys: GrantKeys,
): Promise<VerifiedRunToken & { expiresAtMs: number }> {
  let payload: Record<string, unknown>;
  try {
    // acp-policy's own Ed25519 tokens: node:crypto, not a WebCrypto round through jose.
    payload = await verifyEd25519Jwt(token, keys, {
      issuer: GRANT_ISSUER,
      audience: RUN_TOKEN_AUDIENCE,
      type: RUN_TOKEN_TYPE,
      clockToleranceSeconds: 0,
      requiredClaims: ["sub", "run"],
    });
  } catch (cause) {
    const why =
      cause instanceof JwtExpiredError
        ? "it has expired"
        : cause instanceof JwtInvalidError
          ? cause.message
          : "no trusted key matches it (unknown kid)";
    throw new LoomError(ErrorCode.UNAUTHENTICATED, `run token refused: ${why}`, { cause });
  }
  const claims = RunTokenClaimsSchema.safeParse(payload);
  if (!claims.success) throw new LoomError(ErrorCode.UNAUTHENTICATED, "run token refused: malformed claims");
  return { sub: String(payload.sub), claims: claims.data, expiresAtMs: Number(payload.exp) * 1000 };
}

async function verifyRunToken(
  token: string,
  keys: GrantKeys,
  request: PolicyDecisionRequest,
  verified: VerifiedTokens<VerifiedRunToken>,
): Promise<Identified> {
  let known = verified.get(token);
  if (known === undefined) {
    const { expiresAtMs, ...fresh } = await verifiedRunToken(token, keys);
    verified.set(token, fresh, expiresAtMs);
    known = fresh;
  }
  const { sub, claims: runToken } = known;
  const refuse = (why: string) => new LoomError(ErrorCode.UNAUTHENTICATED, `run token refused: ${why}`);
  // A delegate step starts a child run, which gets a run token of its own.
  if (request.action === PolicyAction.WORKFLOW_START) {
    if (request.runId === undefined || request.runId === runToken.run) {
      throw refuse("a run token starts only a child run of its run");
    }
  } else {
    if (request.runId !== runToken.run) throw refuse("it speaks for another run");
    const workflow = request.runWorkflow;
    if (workflow === undefined || workflow.id !== runToken.wf || workflow.version !== runToken.wfv) {
      throw refuse(`it speaks for workflow ${runToken.wf} v${runToken.wfv} only`);
    }
    if (request.resource.workflow !== undefined && request.resource.workflow !== runToken.wf) {
      throw refuse(`it speaks for workflow ${runToken.wf} only`);
    }
  }
  return {
    principal: { id: sub, roles: runToken.roles, attributes: runToken.attributes },
    runToken,
  };
}

async function keySource(keys: TokenVerifierOptions["keys"]): Promise<JWTVerifyGetKey> {
  if ("jwksUrl" in keys) {
    return createRemoteJWKSet(new URL(keys.jwksUrl), { cooldownDuration: keys.cooldownMs ?? 30_000 });
  }
  if ("jwksFile" in keys) {
    try {
      return createLocalJWKSet(JSON.parse(await readFile(keys.jwksFile, "utf8")));
    } catch (cause) {
      throw new LoomError(
        ErrorCode.CONFIG_INVALID,
        `LOOM_AUTH_PUBLIC_KEYS: cannot read a JWKS from ${keys.jwksFile}`,
        {
          cause,
        },
      );
    }
  }
  return createLocalJWKSet((await ensureDevIssuerKey(keys.devDataDir)).jwks);
}

function principalFrom(payload: JWTPayload, options: TokenVerifierOptions): Principal {
  const roles = claimAt(payload, options.rolesClaim);
  const roleList = typeof roles === "string" ? roles.split(" ") : roles;
  if (!Array.isArray(roleList) || !roleList.every((role) => typeof role === "string" && role !== "")) {
    throw new LoomError(
      ErrorCode.UNAUTHENTICATED,
      `token refused: claim "${options.rolesClaim}" holds no roles`,
    );
  }
  const attributes: Record<string, string> = {};
  for (const claim of options.attributeClaims) {
    const value = claimAt(payload, claim);
    if (typeof value === "string" || typeof value === "number" || typeof value === "boolean") {
      attributes[claim.split(".").at(-1) ?? claim] = String(value);
    }
  }
  return { id: String(payload.sub), roles: roleList, attributes };
}

function claimAt(payload: JWTPayload, path: string): unknown {
  let value: unknown = payload;
  for (const key of path.split(".")) {
    if (value === null || typeof value !== "object") return undefined;
    value = (value as Record<string, unknown>)[key];
  }
  return value;
}

/** A reason the caller can act on, without echoing the token. */
function describeJoseError(error: unknown): string {
  if (error instanceof errors.JWTExpired) return "it has expired";
  if (error instanceof errors.JWTClaimValidationFailed)
    return `claim "${error.claim}" ${error.reason === "check_failed" ? "is not acceptable" : error.reason}: ${error.message}`;
  if (error instanceof errors.JOSEAlgNotAllowed) return "its signature algorithm is not allowed";
  if (error instanceof errors.JWKSNoMatchingKey) return "no trusted key matches it (unknown kid)";
  if (error instanceof errors.JWSSignatureVerificationFailed) return "its signature does not verify";
  if (error instanceof errors.JOSEError) return error.message;
  return "it is not a readable JWT";
}
