import { readFile } from "node:fs/promises";
import type { KV } from "@nats-io/kv";
import {
  type CryptoKey,
  createLocalJWKSet,
  createRemoteJWKSet,
  decodeProtectedHeader,
  errors,
  importJWK,
  type JWK,
  type JWTPayload,
  type JWTVerifyGetKey,
  jwtVerify,
} from "jose";
import { ErrorCode } from "../../schemas/errors.ts";
import { GRANT_ISSUER, type Principal, RUN_TOKEN_AUDIENCE, RUN_TOKEN_TYPE } from "../../schemas/policy.ts";
import { ensureDevIssuerKey } from "../kit/dev-issuer.ts";
import { LoomError } from "../kit/index.ts";

export interface TokenVerifierOptions {
  /** Where keys come from: a JWKS URL, a JWKS file, or the dev issuer key in the data dir. */
  keys: { jwksUrl: string; cooldownMs?: number } | { jwksFile: string } | { devDataDir: string };
  issuer: string;
  audience: string;
  algorithms: string[];
  rolesClaim: string;
  attributeClaims: string[];
  clockSkewMs: number;
  /** KV `loom_grant_keys`: acp-policy's own keys, which sign run tokens. */
  runTokenKeys?: KV;
}

export interface TokenVerifier {
  /**
   * The principal of a verified `Authorization` header value; UNAUTHENTICATED otherwise. A run
   * token is accepted only for the run it was issued for.
   */
  verify(
    authorization: string | undefined,
    context?: { runId?: string | undefined; action?: string },
  ): Promise<Principal>;
}

/** Verifies OAuth 2.0 access tokens (JWT): signature, algorithm allow-list, iss, aud, exp, nbf. */
export async function createTokenVerifier(options: TokenVerifierOptions): Promise<TokenVerifier> {
  const keys = await keySource(options.keys);
  const runKeys = options.runTokenKeys === undefined ? undefined : runTokenKeySource(options.runTokenKeys);
  return {
    async verify(authorization, context = {}) {
      if (authorization === undefined || authorization === "") {
        throw new LoomError(ErrorCode.UNAUTHENTICATED, "no token presented; pass --token or set LOOM_TOKEN");
      }
      const token = authorization.replace(/^Bearer\s+/i, "");
      if (runKeys !== undefined && isRunToken(token)) return verifyRunToken(token, runKeys, context);
      let payload: JWTPayload;
      try {
        ({ payload } = await jwtVerify(token, keys, {
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
      return principalFrom(payload, options);
    },
  };
}

function isRunToken(token: string): boolean {
  try {
    return decodeProtectedHeader(token).typ === RUN_TOKEN_TYPE;
  } catch {
    return false;
  }
}

async function verifyRunToken(
  token: string,
  keys: JWTVerifyGetKey,
  context: { runId?: string | undefined; action?: string },
): Promise<Principal> {
  let payload: JWTPayload;
  try {
    ({ payload } = await jwtVerify(token, keys, {
      issuer: GRANT_ISSUER,
      audience: RUN_TOKEN_AUDIENCE,
      algorithms: ["EdDSA"],
      typ: RUN_TOKEN_TYPE,
      requiredClaims: ["sub", "exp", "run"],
    }));
  } catch (cause) {
    throw new LoomError(ErrorCode.UNAUTHENTICATED, `run token refused: ${describeJoseError(cause)}`, {
      cause,
    });
  }
  // It decides its own run's steps, and may start child runs (delegate steps), which get their own.
  const ownRun = context.runId !== undefined && payload.run === context.runId;
  if (!ownRun && context.action !== "workflow.start") {
    throw new LoomError(ErrorCode.UNAUTHENTICATED, "run token refused: it speaks for another run");
  }
  const roles = Array.isArray(payload.roles) ? payload.roles.filter((role) => typeof role === "string") : [];
  const attributes =
    payload.attributes !== null && typeof payload.attributes === "object"
      ? Object.fromEntries(
          Object.entries(payload.attributes).filter(
            (entry): entry is [string, string] => typeof entry[1] === "string",
          ),
        )
      : {};
  return { id: String(payload.sub), roles, attributes };
}

/** Run tokens are signed with a replica's grant key, looked up by `kid` in KV `loom_grant_keys`. */
function runTokenKeySource(kv: KV): JWTVerifyGetKey {
  const cache = new Map<string, CryptoKey | Uint8Array>();
  return async (header) => {
    const kid = header.kid;
    if (kid === undefined || !/^[A-Za-z0-9_-]{1,128}$/.test(kid)) throw new errors.JWKSNoMatchingKey();
    const cached = cache.get(kid);
    if (cached !== undefined) return cached;
    const entry = await kv.get(kid);
    if (entry === null || entry.operation !== "PUT") throw new errors.JWKSNoMatchingKey();
    const key = await importJWK(JSON.parse(entry.string()) as JWK, "EdDSA");
    cache.set(kid, key);
    return key;
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
