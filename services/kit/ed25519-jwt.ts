import { createPublicKey, type JsonWebKey, type KeyObject, sign, verify } from "node:crypto";

/**
 * Loom's own JWTs (grants, run tokens), signed and verified EdDSA (Ed25519) with `node:crypto`:
 * synchronous, and several times cheaper than a WebCrypto round through `jose`, on a path taken
 * for every tool call. The wire format is the compact JWS `jose` makes, so a `jose` verifier
 * elsewhere accepts these tokens unchanged. Access tokens from identity providers (other
 * algorithms, JWKS) stay with `jose`.
 */

/** A token that is well formed and signed, but past its `exp` (beyond the tolerance). */
export class JwtExpiredError extends Error {
  override readonly name = "JwtExpiredError";
}

/** A token that is malformed, unsigned by the key, or not what the verifier expects. */
export class JwtInvalidError extends Error {
  override readonly name = "JwtInvalidError";
}

/** What a verified token must say. */
export interface JwtExpectations {
  issuer: string;
  audience: string;
  /** The protected header's `typ`, exactly. */
  type: string;
  /** Seconds of clock difference allowed on `exp` and `nbf`. */
  clockToleranceSeconds: number;
  /** Claims that must be present, beyond `iss`, `aud` and `exp`, which always must. */
  requiredClaims: readonly string[];
}

/** The Ed25519 public keys a verifier trusts, by the token's `kid`. */
export type Ed25519Keys = (kid: string | undefined) => Promise<KeyObject>;

const SEGMENT = /^[A-Za-z0-9_-]+$/;
const encode = (value: unknown) => Buffer.from(JSON.stringify(value)).toString("base64url");

/** A compact JWS of `claims` under `{alg: EdDSA, typ, kid}`. `iat` is now; `exp` is `ttlSeconds` later. */
export function signEd25519Jwt(
  claims: Record<string, unknown>,
  options: { type: string; kid: string; ttlSeconds: number; privateKey: KeyObject },
): string {
  const iat = Math.floor(Date.now() / 1000);
  const input = `${encode({ alg: "EdDSA", typ: options.type, kid: options.kid })}.${encode({
    ...claims,
    iat,
    exp: iat + options.ttlSeconds,
  })}`;
  return `${input}.${sign(null, Buffer.from(input), options.privateKey).toString("base64url")}`;
}

function decodeObject(segment: string, what: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(segment, "base64url").toString("utf8"));
  } catch (cause) {
    throw new JwtInvalidError(`the token's ${what} is not JSON`, { cause });
  }
  if (typeof value !== "object" || value === null || Array.isArray(value))
    throw new JwtInvalidError(`the token's ${what} is not an object`);
  return value as Record<string, unknown>;
}

/**
 * The claims of `token` once its signature verifies with the key its `kid` names and it meets
 * `expect`: EdDSA only, no `crit`, the exact `typ`, issuer, audience, `exp` and `nbf` within the
 * tolerance, the required claims present.
 */
export async function verifyEd25519Jwt(
  token: string,
  keys: Ed25519Keys,
  expect: JwtExpectations,
): Promise<Record<string, unknown>> {
  const parts = token.split(".");
  const [header64 = "", payload64 = "", signature64 = ""] = parts;
  if (parts.length !== 3 || ![header64, payload64, signature64].every((part) => SEGMENT.test(part)))
    throw new JwtInvalidError("the token is not a compact JWS");
  const header = decodeObject(header64, "header");
  if (header.alg !== "EdDSA") throw new JwtInvalidError("the token is not signed EdDSA");
  if ("crit" in header || "b64" in header) throw new JwtInvalidError("the token asks for extensions");
  if (header.typ !== expect.type) throw new JwtInvalidError(`the token is no ${expect.type}`);
  const key = await keys(typeof header.kid === "string" ? header.kid : undefined);
  const signature = Buffer.from(signature64, "base64url");
  if (!verify(null, Buffer.from(`${header64}.${payload64}`), key, signature))
    throw new JwtInvalidError("the token's signature does not verify");
  const claims = decodeObject(payload64, "claims");
  for (const claim of ["iss", "aud", "exp", ...expect.requiredClaims])
    if (!(claim in claims)) throw new JwtInvalidError(`the token has no ${claim} claim`);
  const audiences = Array.isArray(claims.aud) ? claims.aud : [claims.aud];
  if (claims.iss !== expect.issuer) throw new JwtInvalidError("the token is from another issuer");
  if (!audiences.includes(expect.audience)) throw new JwtInvalidError("the token is for another audience");
  const now = Math.floor(Date.now() / 1000);
  for (const claim of ["exp", "nbf", "iat"] as const)
    if (claim in claims && typeof claims[claim] !== "number")
      throw new JwtInvalidError(`the token's ${claim} is not a number`);
  if ((claims.exp as number) <= now - expect.clockToleranceSeconds)
    throw new JwtExpiredError("the token has expired");
  if (typeof claims.nbf === "number" && claims.nbf > now + expect.clockToleranceSeconds)
    throw new JwtInvalidError("the token is not valid yet");
  return claims;
}

/** An Ed25519 public key from its JWK; any other kind of key is refused. */
export function ed25519PublicKey(jwk: unknown): KeyObject {
  let key: KeyObject;
  try {
    key = createPublicKey({ key: jwk as JsonWebKey, format: "jwk" });
  } catch (cause) {
    throw new JwtInvalidError("the key is not a usable JWK", { cause });
  }
  if (key.asymmetricKeyType !== "ed25519") throw new JwtInvalidError("the key is not Ed25519");
  return key;
}
