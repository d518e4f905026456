import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createLocalJWKSet, type JSONWebKeySet, jwtVerify } from "jose";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ErrorCode } from "../../schemas/errors.ts";
import { DevAuthorization, readDevClients } from "../../services/acp-policy/dev-authorization.ts";
import { type DevIssuerKey, ensureDevIssuerKey } from "../../services/kit/dev-issuer.ts";
import { LoomError } from "../../services/kit/index.ts";

const log = pino({ level: "silent" });
const CLIENT = {
  clientId: "ops-bot",
  clientSecret: "ops-bot-secret-0123456789",
  subject: "ops-bot",
  roles: ["admin"],
  attributes: { region: "eu" },
};

async function refusal(attempt: Promise<unknown>): Promise<{ code: string; oauth: unknown }> {
  const error = await attempt.then(
    () => undefined,
    (caught: unknown) => caught,
  );
  expect(error).toBeInstanceOf(LoomError);
  const loom = error as LoomError;
  return { code: loom.code, oauth: loom.details?.oauthError };
}

describe("dev authorization - acp-policy's client-credentials issuer", () => {
  let dir: string;
  let key: DevIssuerKey;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "loom-dev-authz-"));
    key = await ensureDevIssuerKey(dir);
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });
  const server = (devKey: DevIssuerKey | undefined) =>
    new DevAuthorization({ key: devKey, clients: [CLIENT], issuer: "loom-dev", audience: "loom", log });

  it("dev authorization - a configured client gets a token its JWKS verifies, with its subject, roles and claims", async () => {
    const issuer = server(key);
    const issued = await issuer.token({
      grantType: "client_credentials",
      clientId: CLIENT.clientId,
      clientSecret: CLIENT.clientSecret,
    });
    const { payload } = await jwtVerify(
      issued.accessToken,
      createLocalJWKSet(issuer.jwks() as JSONWebKeySet),
      {
        issuer: "loom-dev",
        audience: "loom",
      },
    );
    expect(payload).toMatchObject({ sub: "ops-bot", roles: ["admin"], region: "eu" });
    expect(issued).toMatchObject({ tokenType: "Bearer", expiresIn: 3600 });
  });

  it("dev authorization - wrong secret, unknown client, other grants and production are refused, each by its OAuth error", async () => {
    const issuer = server(key);
    const request = { grantType: "client_credentials", clientId: CLIENT.clientId };
    expect(await refusal(issuer.token({ ...request, clientSecret: `${CLIENT.clientSecret}x` }))).toEqual({
      code: ErrorCode.UNAUTHENTICATED,
      oauth: "invalid_client",
    });
    expect(
      await refusal(issuer.token({ ...request, clientId: "nobody", clientSecret: CLIENT.clientSecret })),
    ).toEqual({ code: ErrorCode.UNAUTHENTICATED, oauth: "invalid_client" });
    expect(
      await refusal(issuer.token({ ...request, grantType: "password", clientSecret: CLIENT.clientSecret })),
    ).toEqual({ code: ErrorCode.INVALID_INPUT, oauth: "unsupported_grant_type" });
    const production = server(undefined);
    expect((await refusal(production.token({ ...request, clientSecret: CLIENT.clientSecret }))).code).toBe(
      ErrorCode.DEV_MODE_ONLY,
    );
    expect(() => production.jwks()).toThrow(/only in dev mode/);
  });

  it("dev authorization - a clients file with a duplicate id or a short secret stops start with a clear error", async () => {
    const file = join(dir, "clients.yaml");
    await writeFile(file, `clients:\n  - { clientId: a, clientSecret: short, subject: a }\n`);
    await expect(readDevClients(file)).rejects.toThrow(/LOOM_DEV_CLIENTS: .*clientSecret/);
    await writeFile(
      file,
      `clients:\n  - { clientId: a, clientSecret: a-secret-0123456789, subject: a }\n  - { clientId: a, clientSecret: b-secret-0123456789, subject: b }\n`,
    );
    await expect(readDevClients(file)).rejects.toThrow(/unique/);
    await expect(readDevClients(join(dir, "missing.yaml"))).rejects.toThrow(/cannot read/);
  });
});
