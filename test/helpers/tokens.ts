import { generateKeyPairSync, type KeyObject, sign } from "node:crypto";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** Issuer and audience the test stack's acp-policy is configured to expect. */
export const TEST_ISSUER = "https://idp.test.loom";
export const TEST_AUDIENCE = "loom";
export const TEST_KID = "test-key-1";

/**
 * A stand-in identity provider for one test file: an Ed25519 key whose public half is written to
 * a JWKS file the services trust (`LOOM_AUTH_PUBLIC_KEYS`). Tokens are signed synchronously with
 * node:crypto so tests can make them at module level, and so attacks can shape every byte.
 */
const { privateKey, publicKey } = generateKeyPairSync("ed25519");
const keyDir = mkdtempSync(join(tmpdir(), "loom-test-idp-"));
export const TEST_JWKS_FILE = join(keyDir, "jwks.json");
export const TEST_PUBLIC_JWK = {
  ...(publicKey.export({ format: "jwk" }) as object),
  kid: TEST_KID,
  alg: "EdDSA",
  use: "sig",
};
writeFileSync(TEST_JWKS_FILE, JSON.stringify({ keys: [TEST_PUBLIC_JWK] }));

/** Environment that makes acp-policy trust this file's test issuer. */
export const TEST_AUTH_ENV = {
  LOOM_AUTH_PUBLIC_KEYS: TEST_JWKS_FILE,
  LOOM_AUTH_ISSUER: TEST_ISSUER,
  LOOM_AUTH_AUDIENCE: TEST_AUDIENCE,
};

const b64 = (value: unknown) =>
  Buffer.from(typeof value === "string" ? value : JSON.stringify(value)).toString("base64url");

export interface SignOptions {
  header?: Record<string, unknown>;
  key?: KeyObject;
}

/** A JWT with exactly these claims, signed EdDSA with the test key unless told otherwise. */
export function signJwt(claims: Record<string, unknown>, options: SignOptions = {}): string {
  const header = { alg: "EdDSA", typ: "JWT", kid: TEST_KID, ...options.header };
  const input = `${b64(header)}.${b64(claims)}`;
  return `${input}.${sign(null, Buffer.from(input), options.key ?? privateKey).toString("base64url")}`;
}

/** The standard claims of a valid token for `sub`, valid for an hour. */
export function validClaims(
  sub: string,
  roles: string[],
  extra: Record<string, unknown> = {},
): Record<string, unknown> {
  const now = Math.floor(Date.now() / 1000);
  return { sub, roles, iss: TEST_ISSUER, aud: TEST_AUDIENCE, iat: now, nbf: now, exp: now + 3600, ...extra };
}

/** A valid access token for `sub` holding `roles`. */
export function tokenFor(sub: string, ...roles: string[]): string {
  return signJwt(validClaims(sub, roles));
}
