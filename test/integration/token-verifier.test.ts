import { generateKeyPairSync } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { Kvm } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { GrantSigner } from "../../services/acp-policy/grant-signer.ts";
import { createTokenVerifier } from "../../services/acp-policy/token-verifier.ts";
import { ensureDevIssuerKey, issueDevToken } from "../../services/kit/dev-issuer.ts";
import { LoomError } from "../../services/kit/errors.ts";
import { connectTo, type NatsServer, startNatsServer } from "../helpers/nats-server.ts";
import { signJwt, TEST_AUDIENCE, TEST_ISSUER, validClaims } from "../helpers/tokens.ts";

const base = {
  issuer: TEST_ISSUER,
  audience: TEST_AUDIENCE,
  algorithms: ["EdDSA", "ES256", "RS256"],
  rolesClaim: "realm_access.roles",
  attributeClaims: ["region", "org.department"],
  clockSkewMs: 30_000,
};

function keyPair(kid: string) {
  const { privateKey, publicKey } = generateKeyPairSync("ed25519");
  return {
    privateKey,
    jwk: { ...(publicKey.export({ format: "jwk" }) as object), kid, alg: "EdDSA", use: "sig" },
  };
}

describe("token verification against a JWKS URL", () => {
  let server: Server;
  let url: string;
  let served: object[] = [];
  let fetches = 0;
  beforeAll(async () => {
    server = createServer((_request, response) => {
      fetches += 1;
      response.setHeader("content-type", "application/json");
      response.end(JSON.stringify({ keys: served }));
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/jwks.json`;
  });
  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

  it("identity - roles and attributes come from the configured claims", async () => {
    const first = keyPair("k1");
    served = [first.jwk];
    const verifier = await createTokenVerifier({ ...base, keys: { jwksUrl: url, cooldownMs: 0 } });
    const token = signJwt(
      validClaims("ann", [], {
        realm_access: { roles: ["analyst"] },
        region: "eu",
        org: { department: "sales" },
      }),
      { key: first.privateKey, header: { kid: "k1" } },
    );
    expect(await verifier.verify(`Bearer ${token}`)).toEqual({
      id: "ann",
      roles: ["analyst"],
      attributes: { region: "eu", department: "sales" },
    });
  });

  it("identity - key rotation: a token with a new kid makes the verifier fetch the JWKS again", async () => {
    const old = keyPair("old");
    served = [old.jwk];
    const verifier = await createTokenVerifier({ ...base, keys: { jwksUrl: url, cooldownMs: 0 } });
    const claims = validClaims("ann", [], { realm_access: { roles: ["analyst"] } });
    await verifier.verify(signJwt(claims, { key: old.privateKey, header: { kid: "old" } }));
    const fetchesBefore = fetches;
    const rotated = keyPair("new");
    served = [rotated.jwk];
    const principal = await verifier.verify(
      signJwt(claims, { key: rotated.privateKey, header: { kid: "new" } }),
    );
    expect(principal.id).toBe("ann");
    expect(fetches).toBeGreaterThan(fetchesBefore);
    await expect(
      verifier.verify(signJwt(claims, { key: old.privateKey, header: { kid: "old" } })),
    ).rejects.toThrow(LoomError);
  });

  it("identity - a token verified before is taken from memory only until it expires", async () => {
    const signer = keyPair("k3");
    served = [signer.jwk];
    const verifier = await createTokenVerifier({
      ...base,
      clockSkewMs: 0,
      keys: { jwksUrl: url, cooldownMs: 0 },
    });
    const soon = Math.floor(Date.now() / 1000) + 2;
    const token = signJwt(validClaims("ann", [], { realm_access: { roles: ["analyst"] }, exp: soon }), {
      key: signer.privateKey,
      header: { kid: "k3" },
    });
    expect((await verifier.verify(token)).id).toBe("ann");
    // Control: within its life the same token is accepted again.
    expect((await verifier.verify(token)).id).toBe("ann");
    await sleep(soon * 1000 - Date.now() + 200);
    await expect(verifier.verify(token)).rejects.toThrow(/expired/);
  });

  it("identity - a token without roles in the configured claim is refused", async () => {
    const first = keyPair("k2");
    served = [first.jwk];
    const verifier = await createTokenVerifier({ ...base, keys: { jwksUrl: url, cooldownMs: 0 } });
    const token = signJwt(validClaims("ann", ["admin"]), { key: first.privateKey, header: { kid: "k2" } });
    await expect(verifier.verify(token)).rejects.toThrow(/holds no roles/);
  });
});

describe("development issuer", () => {
  let dataDir: string;
  beforeAll(async () => {
    dataDir = await mkdtemp(join(tmpdir(), "loom-dev-key-"));
  });
  afterAll(() => rm(dataDir, { recursive: true, force: true }));

  it("identity - dev mode makes one key on first use; its tokens verify, with ttl and region", async () => {
    const [a, b] = await Promise.all([ensureDevIssuerKey(dataDir), ensureDevIssuerKey(dataDir)]);
    expect(a.privateJwk.kid).toBe(b.privateJwk.kid);
    const verifier = await createTokenVerifier({
      ...base,
      issuer: "loom-dev",
      audience: "loom",
      rolesClaim: "roles",
      attributeClaims: ["region"],
      keys: { devDataDir: dataDir },
    });
    const token = await issueDevToken(a, {
      sub: "alice",
      roles: ["analyst"],
      attributes: { region: "eu" },
      ttlSeconds: 60,
    });
    expect(await verifier.verify(token)).toEqual({
      id: "alice",
      roles: ["analyst"],
      attributes: { region: "eu" },
    });
    const expired = await issueDevToken(a, { sub: "alice", roles: ["analyst"], ttlSeconds: -120 });
    await expect(verifier.verify(expired)).rejects.toThrow(/expired/);
  });
});

describe("run tokens a replica issued itself", () => {
  let ns: NatsServer;
  let nc: NatsConnection;
  let dir: string;
  beforeAll(async () => {
    ns = await startNatsServer({ args: ["-js"] });
    nc = await connectTo(ns.url);
    dir = await mkdtemp(join(tmpdir(), "loom-run-tokens-"));
  });
  afterAll(async () => {
    await nc?.close();
    await ns?.[Symbol.asyncDispose]();
    await rm(dir, { recursive: true, force: true });
  });

  it("identity - a run token this replica issued is known without its key; any other is verified", async () => {
    const kvm = new Kvm(nc);
    // The signer publishes its key where no verifier looks: only what it issued can be known.
    const signer = await GrantSigner.create(await kvm.create("signer_keys"), 60_000);
    const verifier = await createTokenVerifier({
      ...base,
      keys: { devDataDir: dir },
      runTokenKeys: await kvm.create("verifier_keys"),
    });
    const ann = { id: "ann", roles: ["analyst"], attributes: { region: "eu" } };
    const workflow = { id: "crm-enrich", version: 1 };
    const step = (runId: string) => ({
      action: "tools.call" as const,
      resource: { tool: "crm.get_contact" },
      runId,
      stepId: "contact",
      runWorkflow: workflow,
    });
    const issued = signer.signRunToken(ann, { runId: "run-1", workflow }, 60_000);
    verifier.issued(issued);
    expect((await verifier.identify(`Bearer ${issued.token}`, step("run-1"), "run")).principal).toEqual(ann);
    const refusal = (promise: Promise<unknown>) =>
      promise.then(
        () => "accepted",
        (error: unknown) => (error instanceof LoomError ? error.message : String(error)),
      );
    // Still only for its own run.
    expect(await refusal(verifier.identify(`Bearer ${issued.token}`, step("run-2"), "run"))).toMatch(
      /another run/,
    );
    // A token of the same signer that this verifier was not told of goes through verification.
    const other = signer.signRunToken(ann, { runId: "run-2", workflow }, 60_000);
    expect(await refusal(verifier.identify(`Bearer ${other.token}`, step("run-2"), "run"))).toMatch(
      /unknown key|no trusted key/,
    );
    expect(issued.expiresAtMs).toBeLessThanOrEqual(Date.now() + 60_000);
  });
});
