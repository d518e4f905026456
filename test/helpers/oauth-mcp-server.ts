import { randomUUID } from "node:crypto";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { Server } from "@modelcontextprotocol/sdk/server/index.js";
import { StreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/streamableHttp.js";

export interface OAuthMcpFixture extends AsyncDisposable {
  /** The OAuth 2.0 token endpoint (client credentials, client_secret_basic). */
  tokenUrl: string;
  /** The Streamable HTTP MCP endpoint, which takes only live tokens from the endpoint above. */
  mcpUrl: string;
  /** Every access token issued, in order. */
  issued: string[];
  /** Token requests refused for bad client credentials. */
  refusedClients: number;
  /** MCP requests answered 401. */
  refusedRequests: number;
  /** The distinct tokens MCP requests came with and were let through. */
  accepted: Set<string>;
  /** Makes the MCP endpoint refuse `token` from now on, as a server that revoked it would. */
  revoke(token: string): void;
}

/**
 * A real token endpoint issuing short-lived tokens and a real Streamable HTTP MCP server that
 * checks them, both on free ports of one node:http server.
 */
export async function startOAuthMcpFixture(options: {
  clientId: string;
  clientSecret: string;
  ttlSeconds: number;
  makeServer: () => Server;
}): Promise<OAuthMcpFixture> {
  const expiries = new Map<string, number>();
  const sessions = new Map<string, StreamableHTTPServerTransport>();
  const fixture = {
    issued: [] as string[],
    refusedClients: 0,
    refusedRequests: 0,
    accepted: new Set<string>(),
  };

  const issueToken = async (req: IncomingMessage, res: ServerResponse) => {
    const body = new URLSearchParams(await readBody(req));
    const basic = /^Basic (.+)$/.exec(req.headers.authorization ?? "")?.[1] ?? "";
    const [id = "", secret = ""] = Buffer.from(basic, "base64")
      .toString("utf8")
      .split(":")
      .map(decodeURIComponent);
    res.setHeader("content-type", "application/json");
    if (body.get("grant_type") !== "client_credentials") {
      res.writeHead(400).end(JSON.stringify({ error: "unsupported_grant_type" }));
      return;
    }
    if (id !== options.clientId || secret !== options.clientSecret) {
      fixture.refusedClients++;
      res
        .writeHead(401)
        .end(JSON.stringify({ error: "invalid_client", error_description: "bad client credentials" }));
      return;
    }
    const token = randomUUID();
    expiries.set(token, Date.now() + options.ttlSeconds * 1000);
    fixture.issued.push(token);
    res
      .writeHead(200)
      .end(JSON.stringify({ access_token: token, token_type: "Bearer", expires_in: options.ttlSeconds }));
  };

  const serveMcp = async (req: IncomingMessage, res: ServerResponse) => {
    const token = /^Bearer (.+)$/.exec(req.headers.authorization ?? "")?.[1];
    const expiry = token === undefined ? undefined : expiries.get(token);
    if (token === undefined || expiry === undefined || expiry <= Date.now()) {
      fixture.refusedRequests++;
      res.writeHead(401, { "www-authenticate": 'Bearer error="invalid_token"' }).end();
      return;
    }
    fixture.accepted.add(token);
    const sessionId = req.headers["mcp-session-id"];
    let transport = typeof sessionId === "string" ? sessions.get(sessionId) : undefined;
    if (transport === undefined) {
      const created = new StreamableHTTPServerTransport({
        sessionIdGenerator: () => randomUUID(),
        onsessioninitialized: (id) => {
          sessions.set(id, created);
        },
      });
      await options.makeServer().connect(created);
      transport = created;
    }
    await transport.handleRequest(req, res);
  };

  const http = createServer((req, res) => {
    const route = req.url === "/token" ? issueToken : req.url === "/mcp" ? serveMcp : undefined;
    if (route === undefined) {
      res.writeHead(404).end();
      return;
    }
    route(req, res).catch((error: unknown) => {
      if (!res.headersSent) res.writeHead(500).end(String(error));
    });
  });
  await new Promise<void>((resolve) => http.listen(0, "127.0.0.1", resolve));
  const { port } = http.address() as AddressInfo;
  return Object.assign(fixture, {
    tokenUrl: `http://127.0.0.1:${port}/token`,
    mcpUrl: `http://127.0.0.1:${port}/mcp`,
    revoke: (token: string) => {
      expiries.delete(token);
    },
    async [Symbol.asyncDispose]() {
      await Promise.all([...sessions.values()].map((transport) => transport.close()));
      http.closeAllConnections();
      await new Promise<void>((resolve) => http.close(() => resolve()));
    },
  });
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString("utf8");
}
