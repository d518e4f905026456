import { generateKeyPairSync, type KeyObject, sign } from "node:crypto";
import { jwtVerify, SignJWT } from "jose";
import { describe, expect, it } from "vitest";
import {
  ed25519PublicKey,
  type JwtExpectations,
  JwtExpiredError,
  JwtInvalidError,
  signEd25519Jwt,
  verifyEd25519Jwt,
} from "../../services/kit/ed25519-jwt.ts";

const { privateKey, publicKey } = generateKeyPairSync("ed25519");
const other = generateKeyPairSync("ed25519");
const keys = async (kid: string | undefined) => {
  if (kid !== "k1") throw new JwtInvalidError(`unknown key ${kid}`);
  return publicKey;
};
const EXPECT: JwtExpectations = {
  issuer: "acp-policy",
  audience: "mcp-worker",
  type: "loom-grant+jwt",
  clockToleranceSeconds: 5,
  requiredClaims: ["jti", "sub"],
};
const CLAIMS = { iss: "acp-policy", aud: "mcp-worker", sub: "alice", jti: "d-1", tool: "everything.echo" };
const good = () => signEd25519Jwt(CLAIMS, { type: EXPECT.type, kid: "k1", ttlSeconds: 60, privateKey });

const b64 = (value: unknown) => Buffer.from(JSON.stringify(value)).toString("base64url");
/** A token with exactly this header and these claims, signed by `key`. */
function forge(
  header: Record<string, unknown>,
  claims: Record<string, unknown>,
  key: KeyObject = privateKey,
) {
  const input = `${b64(header)}.${b64(claims)}`;
  return `${input}.${sign(null, Buffer.from(input), key).toString("base64url")}`;
}
const HEADER = { alg: "EdDSA", typ: EXPECT.type, kid: "k1" };
const now = () => Math.floor(Date.now() / 1000);
const valid = () => ({ ...CLAIMS, iat: now(), exp: now() + 60 });

describe("ed25519 jwt - signs and verifies Loom's tokens with node:crypto", () => {
  it("ed25519 jwt - a signed token verifies, with iat and exp set from the ttl", async () => {
    const claims = await verifyEd25519Jwt(good(), keys, EXPECT);
    expect(claims).toMatchObject(CLAIMS);
    expect((claims.exp as number) - (claims.iat as number)).toBe(60);
  });

  it("ed25519 jwt - jose accepts what it signs, and it accepts what jose signs", async () => {
    const { payload, protectedHeader } = await jwtVerify(good(), publicKey, {
      issuer: EXPECT.issuer,
      audience: EXPECT.audience,
      typ: EXPECT.type,
      algorithms: ["EdDSA"],
    });
    expect(payload.tool).toBe("everything.echo");
    expect(protectedHeader.kid).toBe("k1");
    const byJose = await new SignJWT({ tool: "everything.echo", jti: "d-2" })
      .setProtectedHeader(HEADER)
      .setIssuer(EXPECT.issuer)
      .setAudience(EXPECT.audience)
      .setSubject("bob")
      .setIssuedAt()
      .setExpirationTime("60s")
      .sign(privateKey);
    expect(await verifyEd25519Jwt(byJose, keys, EXPECT)).toMatchObject({ sub: "bob", jti: "d-2" });
  });

  const refused: [string, () => string][] = [
    ["alg none, no signature", () => `${b64({ ...HEADER, alg: "none" })}.${b64(valid())}.`],
    ["alg none with a signature", () => forge({ ...HEADER, alg: "none" }, valid())],
    ["another alg named", () => forge({ ...HEADER, alg: "HS256" }, valid())],
    ["another typ", () => forge({ ...HEADER, typ: "JWT" }, valid())],
    ["no typ", () => forge({ alg: "EdDSA", kid: "k1" }, valid())],
    ["a crit extension", () => forge({ ...HEADER, crit: ["b64"], b64: false }, valid())],
    ["signed by another key", () => forge(HEADER, valid(), other.privateKey)],
    ["an unknown kid", () => forge({ ...HEADER, kid: "k2" }, valid())],
    [
      "claims changed after signing",
      () => good().replace(/\.[^.]+\./, `.${b64({ ...valid(), sub: "mallory" })}.`),
    ],
    ["signature cut short", () => good().slice(0, -4)],
    ["a character outside base64url", () => `${good()}=`],
    ["two segments", () => good().split(".").slice(0, 2).join(".")],
    ["four segments", () => `${good()}.${b64({})}`],
    ["another issuer", () => forge(HEADER, { ...valid(), iss: "someone" })],
    ["another audience", () => forge(HEADER, { ...valid(), aud: ["orchestrator"] })],
    ["no exp", () => forge(HEADER, { ...valid(), exp: undefined })],
    ["exp as a string", () => forge(HEADER, { ...valid(), exp: String(now() + 60) })],
    ["nbf in the future", () => forge(HEADER, { ...valid(), nbf: now() + 600 })],
    ["no jti", () => forge(HEADER, { ...valid(), jti: undefined })],
    ["claims that are an array", () => forge(HEADER, [valid()] as unknown as Record<string, unknown>)],
    ["a header that is not JSON", () => `${Buffer.from("{alg").toString("base64url")}.${b64(valid())}.AAAA`],
  ];
  for (const [name, token] of refused) {
    it(`ed25519 jwt - refuses ${name}`, async () => {
      await expect(verifyEd25519Jwt(token(), keys, EXPECT)).rejects.toThrow(JwtInvalidError);
    });
  }

  it("ed25519 jwt - an expired token is refused as expired, one within the tolerance is not", async () => {
    await expect(
      verifyEd25519Jwt(forge(HEADER, { ...valid(), exp: now() - 6 }), keys, EXPECT),
    ).rejects.toThrow(JwtExpiredError);
    await expect(
      verifyEd25519Jwt(forge(HEADER, { ...valid(), exp: now() - 3 }), keys, EXPECT),
    ).resolves.toMatchObject({ sub: "alice" });
  });

  it("ed25519 jwt - an audience list naming the expected audience is accepted", async () => {
    const token = forge(HEADER, { ...valid(), aud: ["orchestrator", "mcp-worker"] });
    await expect(verifyEd25519Jwt(token, keys, EXPECT)).resolves.toMatchObject({ sub: "alice" });
  });

  it("ed25519 jwt - a key that is not Ed25519 is refused", () => {
    const ec = generateKeyPairSync("ec", { namedCurve: "P-256" }).publicKey.export({ format: "jwk" });
    expect(() => ed25519PublicKey(ec)).toThrow(JwtInvalidError);
    expect(() => ed25519PublicKey({ kty: "OKP", crv: "Ed25519", x: "short" })).toThrow(JwtInvalidError);
    expect(ed25519PublicKey(publicKey.export({ format: "jwk" })).asymmetricKeyType).toBe("ed25519");
  });
});
