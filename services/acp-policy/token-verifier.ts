import { readFile } from "node:fs/promises";
import {
  createLocalJWKSet,
  createRemoteJWKSet,
  errors,
  type JWTPayload,
  type JWTVerifyGetKey,
  jwtVerify,
} from "jose";
import { ErrorCode } from "../../schemas/errors.ts";
import type { Principal } from "../../schemas/policy.ts";
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
}

export interface TokenVerifier {
  /** The principal of a verified `Authorization` header value; UNAUTHENTICATED otherwise. */
  verify(authorization: string | undefined): Promise<Principal>;
}

/** Verifies OAuth 2.0 access tokens (JWT): signature, algorithm allow-list, iss, aud, exp, nbf. */
export async function createTokenVerifier(options: TokenVerifierOptions): Promise<TokenVerifier> {
  const keys = await keySource(options.keys);
  return {
    async verify(authorization) {
      if (authorization === undefined || authorization === "") {
        throw new LoomError(ErrorCode.UNAUTHENTICATED, "no token presented; pass --token or set LOOM_TOKEN");
      }
      const token = authorization.replace(/^Bearer\s+/i, "");
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
