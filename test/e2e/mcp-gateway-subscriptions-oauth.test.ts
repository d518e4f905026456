import { join } from "node:path";
import { ClientCredentialsProvider } from "@modelcontextprotocol/sdk/client/auth-extensions.js";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import {
  ResourceListChangedNotificationSchema,
  ResourceUpdatedNotificationSchema,
} from "@modelcontextprotocol/sdk/types.js";
import { createLocalJWKSet, type JSONWebKeySet, jwtVerify } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { eventually } from "../helpers/eventually.ts";
import { type GatewayStack, startGateway } from "../helpers/gateway.ts";
import type { Loom } from "../helpers/loom.ts";

/** Dev clients the token endpoint knows (the secrets are test fixtures, not credentials). */
const CLIENTS = `
clients:
  - { clientId: ops-bot, clientSecret: ops-bot-secret-0123456789, subject: ops-bot, roles: [admin], attributes: { region: eu } }
  - { clientId: viewer-bot, clientSecret: viewer-bot-secret-0123456789, subject: viewer-bot, roles: [viewer] }
`;
const DYNAMIC = "demo://resource/dynamic/text/7";

describe("mcp gateway - resource subscriptions over GET /mcp, and OAuth discovery in dev mode", () => {
  let gateway: GatewayStack;
  let loom: Loom;
  let base: string;
  let mcpUrl: URL;

  /** An SDK client that finds the token endpoint by OAuth discovery and gets a token by client credentials. */
  async function oauthClient(clientId: string, clientSecret: string): Promise<Client> {
    const client = new Client({ name: "oauth-test", version: "1.0.0" });
    const authProvider = new ClientCredentialsProvider({ clientId, clientSecret, expectedIssuer: base });
    await gateway.track(client).connect(new StreamableHTTPClientTransport(mcpUrl, { authProvider }));
    return client;
  }

  beforeAll(async () => {
    gateway = await startGateway({
      prefix: "loom-gateway-oauth-",
      servers: ["time", "crm", "everything"],
      files: { "clients.yaml": CLIENTS },
      // Dev mode: no JWKS configured, so acp-policy signs and trusts its own development key.
      env: (dir) => ({
        LOOM_AUTH_PUBLIC_KEYS: "",
        LOOM_AUTH_ISSUER: "loom-dev",
        LOOM_DATA_DIR: join(dir, "data"),
        LOOM_DEV_CLIENTS: join(dir, "clients.yaml"),
      }),
      tools: ["time.get_time", "crm.get_contact", "everything.echo"],
      readyTimeoutMs: 120_000,
    });
    ({ loom, base, mcpUrl } = gateway);
  }, 180_000);
  afterAll(async () => {
    await gateway?.[Symbol.asyncDispose]();
  });

  it("oauth - discovery from the 401 leads to dev authorization server metadata, a token and its JWKS", async () => {
    const unauthorized = await fetch(mcpUrl, {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json, text/event-stream" },
      body: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "tools/list" }),
    });
    expect(unauthorized.status).toBe(401);
    const resourceMetadataUrl = /resource_metadata="([^"]+)"/.exec(
      unauthorized.headers.get("www-authenticate") ?? "",
    )?.[1];
    const resource = (await (await fetch(resourceMetadataUrl ?? "")).json()) as {
      authorization_servers: string[];
    };
    expect(resource.authorization_servers).toEqual([base]);
    const metadata = (await (
      await fetch(`${resource.authorization_servers[0]}/.well-known/oauth-authorization-server`)
    ).json()) as Record<string, unknown>;
    expect(metadata).toMatchObject({
      issuer: base,
      token_endpoint: `${base}/oauth/token`,
      jwks_uri: `${base}/oauth/jwks`,
      grant_types_supported: ["client_credentials"],
      token_endpoint_auth_methods_supported: ["client_secret_basic", "client_secret_post"],
    });
    const issued = await fetch(String(metadata.token_endpoint), {
      method: "POST",
      headers: { "Content-Type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({
        grant_type: "client_credentials",
        client_id: "viewer-bot",
        client_secret: "viewer-bot-secret-0123456789",
      }),
    });
    expect(issued.status).toBe(200);
    expect(issued.headers.get("cache-control")).toBe("no-store");
    const body = (await issued.json()) as { access_token: string; token_type: string; expires_in: number };
    expect(body).toMatchObject({ token_type: "Bearer", expires_in: 3600 });
    const keys = (await (await fetch(String(metadata.jwks_uri))).json()) as JSONWebKeySet;
    const { payload } = await jwtVerify(body.access_token, createLocalJWKSet(keys), {
      issuer: "loom-dev",
      audience: "loom",
    });
    expect(payload).toMatchObject({ sub: "viewer-bot", roles: ["viewer"] });
    const listed = await fetch(mcpUrl, {
      method: "POST",
      headers: {
        Authorization: `Bearer ${body.access_token}`,
        "Content-Type": "application/json",
        Accept: "application/json, text/event-stream",
      },
      body: JSON.stringify({
        jsonrpc: "2.0",
        id: 1,
        method: "initialize",
        params: {
          protocolVersion: "2025-06-18",
          capabilities: {},
          clientInfo: { name: "fetch", version: "1" },
        },
      }),
    });
    expect(listed.status).toBe(200);
  });

  it("oauth - the MCP SDK's ClientCredentialsProvider connects with no token handed to it", async () => {
    const client = await oauthClient("viewer-bot", "viewer-bot-secret-0123456789");
    const tools = (await client.listTools()).tools.map((tool) => tool.name);
    expect(tools).toContain("crm.get_contact");
    expect(tools).not.toContain("crm.delete_record");
    expect(client.getServerCapabilities()).toMatchObject({
      resources: { subscribe: true, listChanged: true },
      tools: { listChanged: true },
      prompts: { listChanged: true },
    });
  });

  it("subscriptions - updates of a subscribed resource reach the session's GET stream, and stop after unsubscribe", async () => {
    const client = await oauthClient("ops-bot", "ops-bot-secret-0123456789");
    const updates: string[] = [];
    client.setNotificationHandler(ResourceUpdatedNotificationSchema, (notification) => {
      updates.push(notification.params.uri);
    });
    await client.subscribeResource({ uri: DYNAMIC });
    // server-everything sends an update of every subscribed resource at once, then every 5 s.
    await client.callTool({ name: "everything.toggle-subscriber-updates", arguments: {} });
    await eventually(
      () => updates,
      (heard) => heard.includes(DYNAMIC),
    );
    await client.unsubscribeResource({ uri: DYNAMIC });
    const heard = updates.length;
    await new Promise((resolve) => setTimeout(resolve, 6_000));
    expect(updates.length).toBe(heard);
    await client.callTool({ name: "everything.toggle-subscriber-updates", arguments: {} });
    await expect(client.unsubscribeResource({ uri: DYNAMIC })).rejects.toThrow(/not subscribed/);
  }, 60_000);

  it("subscriptions - a session that ends has its subscriptions ended on the server, decided and audited", async () => {
    const client = await oauthClient("ops-bot", "ops-bot-secret-0123456789");
    const transport = client.transport as StreamableHTTPClientTransport;
    const sessionId = transport.sessionId;
    await client.subscribeResource({ uri: "demo://resource/dynamic/text/8" });
    const executions = async () => {
      const { stdout } = await loom.cli(["audit", "tail", "--run", `mcp-${sessionId}`, "--json"]);
      return stdout
        .trim()
        .split("\n")
        .filter((line) => line !== "")
        .map((line) => JSON.parse(line) as { kind: string; resource: string; outcome?: string })
        .filter(
          (record) =>
            record.kind === "tool.execution" &&
            record.resource === "everything.demo://resource/dynamic/text/8",
        );
    };
    expect(await executions()).toHaveLength(1);
    await transport.terminateSession();
    const after = await eventually(executions, (records) => records.length === 2);
    expect(after.every((record) => record.outcome === "ok")).toBe(true);
  }, 60_000);

  it("subscriptions - a server's new resource reaches every open GET stream as resources/list_changed", async () => {
    const client = await oauthClient("ops-bot", "ops-bot-secret-0123456789");
    let changes = 0;
    client.setNotificationHandler(ResourceListChangedNotificationSchema, () => {
      changes += 1;
    });
    const result = await client.callTool({
      name: "everything.gzip-file-as-resource",
      arguments: {
        name: "subscribed.txt.gz",
        data: `data:text/plain;base64,${Buffer.from("hello").toString("base64")}`,
        outputType: "resource",
      },
    });
    expect(result.isError).not.toBe(true);
    await eventually(
      () => changes,
      (count) => count > 0,
    );
    await eventually(
      async () => (await client.listResources()).resources.map((resource) => resource.name),
      (names) => names.includes("everything.subscribed.txt.gz"),
    );
  }, 60_000);
});
