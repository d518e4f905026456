import { generateKeyPairSync } from "node:crypto";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { JWK } from "jose";
import { ErrorCode } from "../../schemas/errors.ts";
import { LoomError } from "./errors.ts";

/** Issuer and audience of development tokens; acp-policy expects them unless configured otherwise. */
export const DEV_ISSUER = "loom-dev";
export const DEFAULT_AUDIENCE = "loom";

export interface DevIssuerKey {
  /** The Ed25519 private key as a JWK, with its `kid`. */
  privateJwk: JWK;
  /** The public half, as the JWKS acp-policy verifies development tokens with. */
  jwks: { keys: JWK[] };
}

/** Where the development issuer's key lives under the local data dir (`.loom/`, never committed). */
export function devIssuerPaths(dataDir: string): { privateKey: string; jwks: string } {
  const dir = join(dataDir, "keys");
  return { privateKey: join(dir, "dev-issuer.private.jwk.json"), jwks: join(dir, "dev-issuer.jwks.json") };
}

/**
 * The development signing key, generated on first use. Files are created exclusively, so when
 * acp-policy and `loom token issue` start together the first writer wins and the other reads its key.
 */
export async function ensureDevIssuerKey(dataDir: string): Promise<DevIssuerKey> {
  const paths = devIssuerPaths(dataDir);
  try {
    return await readDevIssuerKey(paths);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
  }
  const { privateKey, publicKey } = generateKeyPairSync("ed25519");
  const publicJwk = publicKey.export({ format: "jwk" }) as JWK;
  // jose is loaded here, not with this module: the orchestrator reads DEV_ISSUER from it at every start.
  const { calculateJwkThumbprint } = await import("jose");
  const kid = await calculateJwkThumbprint(publicJwk);
  const privateJwk: JWK = { ...(privateKey.export({ format: "jwk" }) as JWK), kid, alg: "EdDSA", use: "sig" };
  const jwks = { keys: [{ ...publicJwk, kid, alg: "EdDSA", use: "sig" }] };
  await mkdir(join(dataDir, "keys"), { recursive: true, mode: 0o700 });
  try {
    await writeFile(paths.privateKey, JSON.stringify(privateJwk), { flag: "wx", mode: 0o600 });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
    return readDevIssuerKeyWhenWritten(paths);
  }
  await writeFile(paths.jwks, JSON.stringify(jwks, null, 2), { mode: 0o644 });
  return { privateJwk, jwks };
}

async function readDevIssuerKey(paths: { privateKey: string; jwks: string }): Promise<DevIssuerKey> {
  const privateJwk = JSON.parse(await readFile(paths.privateKey, "utf8")) as JWK;
  const jwks = JSON.parse(await readFile(paths.jwks, "utf8")) as { keys: JWK[] };
  return { privateJwk, jwks };
}

/** The other writer created the private key a moment ago; its JWKS follows right after. */
async function readDevIssuerKeyWhenWritten(paths: {
  privateKey: string;
  jwks: string;
}): Promise<DevIssuerKey> {
  for (let attempt = 0; attempt < 50; attempt++) {
    try {
      return await readDevIssuerKey(paths);
    } catch {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }
  throw new LoomError(ErrorCode.CONFIG_INVALID, `the development key in ${paths.privateKey} is unreadable`);
}

export interface TokenRequest {
  sub: string;
  roles: string[];
  /** Extra claims such as `region`. */
  attributes?: Record<string, string>;
  ttlSeconds: number;
  issuer?: string;
  audience?: string;
}

/** Signs a development access token (JWT, EdDSA) with the dev issuer key. */
export async function issueDevToken(key: DevIssuerKey, request: TokenRequest): Promise<string> {
  const { importJWK, SignJWT } = await import("jose");
  const privateKey = await importJWK(key.privateJwk, "EdDSA");
  return new SignJWT({ roles: request.roles, ...request.attributes })
    .setProtectedHeader({
      alg: "EdDSA",
      typ: "JWT",
      ...(key.privateJwk.kid ? { kid: key.privateJwk.kid } : {}),
    })
    .setSubject(request.sub)
    .setIssuer(request.issuer ?? DEV_ISSUER)
    .setAudience(request.audience ?? DEFAULT_AUDIENCE)
    .setIssuedAt()
    .setNotBefore("0s")
    .setExpirationTime(`${request.ttlSeconds}s`)
    .sign(privateKey);
}
