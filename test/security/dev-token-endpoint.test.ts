import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { afterAll, beforeAll, describe, it } from "vitest";
import { DevTokenContract } from "../../schemas/contracts.ts";
import { ErrorCode } from "../../schemas/errors.ts";
import { Subjects } from "../../schemas/subjects.ts";
import { LoomError, request } from "../../services/kit/index.ts";
import { AttackClass, attack, control } from "../helpers/attack-tally.ts";
import { type Loom, NatsUser, startLoom } from "../helpers/loom.ts";
import { freePort } from "../helpers/ports.ts";
import { TEST_ISSUER, tokenFor } from "../helpers/tokens.ts";

/** Dev clients (test fixtures, not credentials). */
const VIEWER = { id: "viewer-bot", secret: "viewer-bot-secret-0123456789" };
const CLIENTS = `
clients:
  - { clientId: ${VIEWER.id}, clientSecret: ${VIEWER.secret}, subject: viewer-bot, roles: [viewer], attributes: { region: eu } }
  - { clientId: admin-bot, clientSecret: admin-bot-secret-0123456789, subject: admin-bot, roles: [admin] }
`;

type Form = Record<string, string>;

/** POSTs a token request; `basic` sends the client's id and secret as HTTP Basic instead of the form. */
async function tokenRequest(
  base: string,
  form: Form,
  basic?: { id: string; secret: string },
): Promise<{ status: number; body: Record<string, unknown>; challenge: string | null }> {
  const headers: Record<string, string> = { "Content-Type": "application/x-www-form-urlencoded" };
  if (basic !== undefined) {
    headers.Authorization = `Basic ${Buffer.from(`${basic.id}:${basic.secret}`).toString("base64")}`;
  }
  const response = await fetch(`${base}/oauth/token`, {
    method: "POST",
    headers,
    body: new URLSearchParams(form),
  });
  const text = await response.text();
  return {
    status: response.status,
    // Outside dev mode no such route exists: the edge's own 404 page is no JSON.
    body: (response.headers.get("content-type")?.includes("json") ? JSON.parse(text) : { text }) as Record<
      string,
      unknown
    >,
    challenge: response.headers.get("www-authenticate"),
  };
}

const credentials = (client: { id: string; secret: string }): Form => ({
  client_id: client.id,
  client_secret: client.secret,
});

describe("security - tokens: the development token endpoint in dev mode", () => {
  let loom: Loom;
  let dir: string;
  let base: string;
  const clients: Client[] = [];

  async function gateway(token: string): Promise<Client> {
    const client = new Client({ name: "dev-token-attacks", version: "1.0.0" });
    await client.connect(
      new StreamableHTTPClientTransport(new URL(`${base}/mcp`), {
        requestInit: { headers: { Authorization: `Bearer ${token}` } },
      }),
    );
    clients.push(client);
    return client;
  }

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "loom-dev-token-"));
    await writeFile(join(dir, "clients.yaml"), CLIENTS);
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    loom = await startLoom({
      env: {
        LOOM_AUTH_PUBLIC_KEYS: "",
        LOOM_AUTH_ISSUER: "loom-dev",
        LOOM_DATA_DIR: join(dir, "data"),
        LOOM_DEV_CLIENTS: join(dir, "clients.yaml"),
        LOOM_A2A_PORT: String(port),
        OTEL_TRACES_EXPORTER: "none",
      },
      readyTimeoutMs: 120_000,
    });
  }, 180_000);
  afterAll(async () => {
    await Promise.all(clients.map((client) => client.close()));
    await loom?.[Symbol.asyncDispose]();
    await rm(dir, { recursive: true, force: true });
  });

  it("dev token endpoint - wrong, unknown or missing client credentials are invalid_client 401", async () => {
    const invalidClient = (answer: Awaited<ReturnType<typeof tokenRequest>>) =>
      answer.status === 401 &&
      answer.body.error === "invalid_client" &&
      answer.body.access_token === undefined;
    await attack(AttackClass.TOKENS, "a known client with a wrong secret (form)", async () =>
      invalidClient(
        await tokenRequest(base, {
          grant_type: "client_credentials",
          ...credentials({ id: VIEWER.id, secret: "viewer-bot-secret-0123456780" }),
        }),
      ),
    );
    await attack(AttackClass.TOKENS, "a known client with a wrong secret (HTTP Basic)", async () => {
      const answer = await tokenRequest(
        base,
        { grant_type: "client_credentials" },
        { id: VIEWER.id, secret: "guess" },
      );
      return invalidClient(answer) && answer.challenge?.startsWith("Basic") === true;
    });
    await attack(AttackClass.TOKENS, "an unknown client with some secret", async () =>
      invalidClient(
        await tokenRequest(base, {
          grant_type: "client_credentials",
          ...credentials({ id: "root", secret: VIEWER.secret }),
        }),
      ),
    );
    await attack(AttackClass.TOKENS, "a known client id with no secret", async () =>
      invalidClient(await tokenRequest(base, { grant_type: "client_credentials", client_id: VIEWER.id })),
    );
    await attack(AttackClass.TOKENS, "the secret of one client presented under another's id", async () =>
      invalidClient(
        await tokenRequest(base, {
          grant_type: "client_credentials",
          ...credentials({ id: "admin-bot", secret: VIEWER.secret }),
        }),
      ),
    );
    await control("the right secret, in the form and as HTTP Basic, gets a Bearer token", async () => {
      const form = await tokenRequest(base, { grant_type: "client_credentials", ...credentials(VIEWER) });
      const basic = await tokenRequest(base, { grant_type: "client_credentials" }, VIEWER);
      return (
        form.status === 200 &&
        typeof form.body.access_token === "string" &&
        basic.status === 200 &&
        basic.body.token_type === "Bearer"
      );
    });
  });

  it("dev token endpoint - grants other than client_credentials, and malformed requests, are refused", async () => {
    for (const grant of [
      "password",
      "authorization_code",
      "refresh_token",
      "urn:ietf:params:oauth:grant-type:jwt-bearer",
    ]) {
      await attack(AttackClass.TOKENS, `grant_type ${grant} with valid client credentials`, async () => {
        const answer = await tokenRequest(base, {
          grant_type: grant,
          ...credentials(VIEWER),
          username: "admin",
          password: "admin",
          code: "x",
          refresh_token: "x",
        });
        return answer.status === 400 && answer.body.error === "unsupported_grant_type";
      });
    }
    await attack(AttackClass.TOKENS, "no grant_type at all", async () => {
      const answer = await tokenRequest(base, credentials(VIEWER));
      return answer.status === 400 && answer.body.error === "invalid_request";
    });
    await attack(AttackClass.TOKENS, "two client authentication methods at once", async () => {
      const answer = await tokenRequest(
        base,
        { grant_type: "client_credentials", client_secret: VIEWER.secret },
        VIEWER,
      );
      return answer.status === 400 && answer.body.error === "invalid_request";
    });
    await attack(AttackClass.TOKENS, "a JSON body instead of a form", async () => {
      const response = await fetch(`${base}/oauth/token`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ grant_type: "client_credentials", ...credentials(VIEWER) }),
      });
      const body = (await response.json()) as Record<string, unknown>;
      return response.status === 400 && body.access_token === undefined;
    });
    await control("the same client with grant_type client_credentials", async () => {
      const answer = await tokenRequest(base, { grant_type: "client_credentials", ...credentials(VIEWER) });
      return answer.status === 200;
    });
  });

  it("dev token endpoint - a token it issued carries its client's roles and no more", async () => {
    const issued = await tokenRequest(base, { grant_type: "client_credentials", ...credentials(VIEWER) });
    const viewer = await gateway(String(issued.body.access_token));
    await attack(AttackClass.TOKENS, "a viewer client's token deletes a CRM record", async () => {
      const result = await viewer.callTool({ name: "crm.delete_record", arguments: { id: "c-1" } });
      return result.isError === true && JSON.stringify(result.content).includes("only-admins-delete");
    });
    await attack(AttackClass.TOKENS, "a viewer client's token lists the admin-only tool", async () => {
      const tools = (await viewer.listTools()).tools.map((tool) => tool.name);
      return !tools.includes("crm.delete_record");
    });
    await attack(AttackClass.TOKENS, "a viewer client's token reads contacts unmasked", async () => {
      const result = await viewer.callTool({ name: "crm.get_contact", arguments: { id: "c-1" } });
      return result.isError !== true && !JSON.stringify(result).includes("ada@example.com");
    });
    await control("a viewer client's token reads a contact, masked", async () => {
      const result = await viewer.callTool({ name: "crm.get_contact", arguments: { id: "c-1" } });
      return result.isError !== true && JSON.stringify(result).includes("Ada");
    });
  });

  it("dev token endpoint - only the orchestrator's NATS user may ask acp-policy for a token", async () => {
    const ask = async (user: NatsUser) =>
      request(
        await loom.connectAs(user),
        Subjects.POLICY_DEV_TOKEN,
        DevTokenContract,
        { grantType: "client_credentials", clientId: VIEWER.id, clientSecret: VIEWER.secret },
        { timeoutMs: 3_000 },
      );
    for (const user of [NatsUser.SUBMITTER, NatsUser.MCP_WORKER]) {
      await attack(AttackClass.TOKENS, `the ${user} NATS user asks for a dev token on the bus`, async () => {
        try {
          await ask(user);
          return false;
        } catch (error) {
          return error instanceof LoomError;
        }
      });
    }
    await control("the orchestrator's user gets one", async () => {
      const issued = await ask(NatsUser.ORCHESTRATOR);
      return issued.tokenType === "Bearer";
    });
  });
});

describe("security - tokens: no development authorization server outside dev mode", () => {
  let loom: Loom;
  let dir: string;
  let base: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "loom-no-dev-token-"));
    await writeFile(join(dir, "clients.yaml"), CLIENTS);
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    // A JWKS is configured (the test identity provider): LOOM_DEV_CLIENTS must not matter.
    loom = await startLoom({
      env: {
        LOOM_DEV_CLIENTS: join(dir, "clients.yaml"),
        LOOM_A2A_PORT: String(port),
        OTEL_TRACES_EXPORTER: "none",
      },
      readyTimeoutMs: 120_000,
    });
  }, 180_000);
  afterAll(async () => {
    await loom?.[Symbol.asyncDispose]();
    await rm(dir, { recursive: true, force: true });
  });

  it("dev token endpoint - the token endpoint, metadata and keys are absent, and acp-policy refuses on the bus", async () => {
    await attack(
      AttackClass.TOKENS,
      "a configured dev client asks the token endpoint in production",
      async () => {
        const answer = await tokenRequest(base, { grant_type: "client_credentials", ...credentials(VIEWER) });
        return answer.status === 404 && answer.body.access_token === undefined;
      },
    );
    await attack(AttackClass.TOKENS, "authorization server metadata in production", async () => {
      const response = await fetch(`${base}/.well-known/oauth-authorization-server`);
      return response.status === 404;
    });
    await attack(AttackClass.TOKENS, "the dev signing key's JWKS in production", async () => {
      const response = await fetch(`${base}/oauth/jwks`);
      return response.status === 404;
    });
    await attack(
      AttackClass.TOKENS,
      "the orchestrator's own user asks acp-policy for a dev token",
      async () => {
        try {
          await request(
            await loom.connectAs(NatsUser.ORCHESTRATOR),
            Subjects.POLICY_DEV_TOKEN,
            DevTokenContract,
            { grantType: "client_credentials", clientId: VIEWER.id, clientSecret: VIEWER.secret },
            { timeoutMs: 3_000 },
          );
          return false;
        } catch (error) {
          return error instanceof LoomError && error.code === ErrorCode.DEV_MODE_ONLY;
        }
      },
    );
    await control("the gateway names the configured issuer URL, and its tokens work", async () => {
      const metadata = (await (await fetch(`${base}/.well-known/oauth-protected-resource/mcp`)).json()) as {
        authorization_servers: string[];
      };
      const client = new Client({ name: "prod", version: "1.0.0" });
      await client.connect(
        new StreamableHTTPClientTransport(new URL(`${base}/mcp`), {
          requestInit: { headers: { Authorization: `Bearer ${tokenFor("ann", "admin")}` } },
        }),
      );
      const tools = await client.listTools();
      await client.close();
      return metadata.authorization_servers[0] === TEST_ISSUER && tools.tools.length > 0;
    });
  });
});
