import { Writable } from "node:stream";
import type { Progress } from "@modelcontextprotocol/sdk/types.js";
import { afterEach, describe, expect, it } from "vitest";
import { ErrorCode } from "../../schemas/errors.ts";
import { McpServerConfigSchema } from "../../schemas/mcp.ts";
import { createLogger, LoomError } from "../../services/kit/index.ts";
import { createConnections } from "../../services/mcp-worker/connections.ts";
import type { ListKind, McpConnection } from "../../services/mcp-worker/mcp-connection.ts";
import type { ServerPool } from "../../services/mcp-worker/server-pool.ts";
import { ClientCredentialsTokens } from "../../services/mcp-worker/token-source.ts";
import { fixtureServer } from "../helpers/mcp-fixture-server.ts";
import { startOAuthMcpFixture } from "../helpers/oauth-mcp-server.ts";
import { startWsMcpServer } from "../helpers/ws-mcp-server.ts";

const GOVERNANCE = { owner: "tests", data_classification: "internal", access_level: "read" };
const CLIENT_SECRET = "s3cret-for-tests";

function capture() {
  const lines: string[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(chunk.toString("utf8"));
      done();
    },
  });
  return { log: createLogger({ service: "test", level: "debug", destination }), lines };
}

const disposables: AsyncDisposable[] = [];
const connections: ServerPool[] = [];
afterEach(async () => {
  await Promise.all(connections.splice(0).map((connection) => connection.close()));
  for (const disposable of disposables.splice(0).reverse()) await disposable[Symbol.asyncDispose]();
});

/** Connections made the way the worker makes them, from server entries and an environment. */
function make(
  entry: Record<string, unknown>,
  env: Record<string, string>,
  logLevel: "debug" | "error" = "debug",
) {
  const { log, lines } = capture();
  const server = McpServerConfigSchema.parse({
    name: "fixture",
    timeout: "5s",
    governance: GOVERNANCE,
    ...entry,
  });
  return { ...createConnections([server], { log, logLevel, secret: (name) => env[name] }), lines };
}

/** The connection for one server entry, which must be accepted. */
function connect(
  entry: Record<string, unknown>,
  env: Record<string, string> = {},
  logLevel: "debug" | "error" = "debug",
): { connection: ReturnType<typeof direct>; lines: string[] } {
  const made = make(entry, env, logLevel);
  const pool = made.connections.get("fixture");
  if (pool === undefined) throw new Error(`refused: ${made.refused[0]?.reason}`);
  connections.push(pool);
  return { connection: direct(pool), lines: made.lines };
}

/** The server's one connection, as the worker's pool hands it to a call (one attempt, no retry). */
function direct(pool: ServerPool) {
  return {
    listTools: () => pool.listTools(),
    onListChanged: (listener: (kind: ListKind) => void) => pool.onListChanged(listener),
    callTool: async (...args: Parameters<McpConnection["callTool"]>) =>
      (
        await pool.run((connection) => connection.callTool(...args), {
          timeoutMs: args[2],
          repeatable: false,
        })
      ).result,
  };
}

function text(result: { content: unknown[] }): string {
  return result.content.map((part) => (part as { text?: string }).text ?? "").join("");
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe("mcp client - WebSocket transport", () => {
  it("mcp client - lists and calls the tools of a WebSocket MCP server", async () => {
    const ws = await startWsMcpServer(fixtureServer);
    disposables.push(ws);
    const { connection } = connect({ transport: { type: "websocket", url: ws.url } });
    const tools = await connection.listTools();
    expect(tools?.map((tool) => tool.name)).toContain("echo");
    expect(text(await connection.callTool("echo", { text: "over a socket" }, 5_000))).toBe("over a socket");
  });

  it("mcp client - a bearer token named by tokenEnv opens the socket; a wrong one is refused", async () => {
    const ws = await startWsMcpServer(fixtureServer, "ws-token");
    disposables.push(ws);
    const entry = {
      transport: { type: "websocket", url: ws.url },
      auth: { type: "bearer", tokenEnv: "WS_TOKEN" },
    };
    const good = connect(entry, { WS_TOKEN: "ws-token" });
    expect(text(await good.connection.callTool("echo", { text: "let in" }, 5_000))).toBe("let in");
    expect(good.lines.join("")).not.toContain("ws-token");

    const bad = connect(entry, { WS_TOKEN: "not-the-token" });
    const failure = await bad.connection
      .callTool("echo", { text: "kept out" }, 5_000)
      .catch((e: unknown) => e);
    expect(failure).toBeInstanceOf(LoomError);
    expect((failure as LoomError).code).toBe(ErrorCode.SERVER_UNAVAILABLE);
    expect((failure as LoomError).message).toContain('MCP server "fixture"');
    expect(ws.refused).toBeGreaterThanOrEqual(1);
  });

  it("mcp client - a server whose secret is not in the environment, or with auth on stdio, is refused", () => {
    const missing = make(
      {
        transport: { type: "websocket", url: "ws://127.0.0.1:1" },
        auth: { type: "bearer", tokenEnv: "NOT_SET" },
      },
      {},
    );
    expect(missing.connections.size).toBe(0);
    expect(missing.refused[0]?.reason).toContain("NOT_SET, which is not set");
    const stdio = make(
      { transport: { type: "stdio", command: "node" }, auth: { type: "bearer", tokenEnv: "SET" } },
      { SET: "x" },
    );
    expect(stdio.refused[0]?.reason).toContain("auth applies to http and websocket servers");
  });
});

describe("mcp client - OAuth client credentials over Streamable HTTP", () => {
  async function oauthServer(ttlSeconds: number) {
    const fixture = await startOAuthMcpFixture({
      clientId: "loom-worker",
      clientSecret: CLIENT_SECRET,
      ttlSeconds,
      makeServer: fixtureServer,
    });
    disposables.push(fixture);
    const entry = (secretEnv: string) => ({
      transport: { type: "http", url: fixture.mcpUrl },
      auth: {
        type: "client_credentials",
        tokenUrl: fixture.tokenUrl,
        clientId: "loom-worker",
        clientSecretEnv: secretEnv,
        scope: "mcp:tools",
      },
    });
    return { fixture, entry };
  }

  it("mcp client - calls succeed across token expiry because the token is renewed before it expires", async () => {
    const { fixture, entry } = await oauthServer(1);
    const { connection, lines } = connect(entry("CRM_SECRET"), { CRM_SECRET: CLIENT_SECRET });
    expect(text(await connection.callTool("echo", { text: "first" }, 5_000))).toBe("first");
    expect(fixture.issued).toHaveLength(1);
    // Past 80% of the 1 s lifetime, before its end: the next call must bring a new token.
    await sleep(900);
    expect(text(await connection.callTool("echo", { text: "second" }, 5_000))).toBe("second");
    await sleep(900);
    expect(text(await connection.callTool("echo", { text: "third" }, 5_000))).toBe("third");
    expect(fixture.issued.length).toBeGreaterThanOrEqual(3);
    expect(fixture.accepted.size).toBeGreaterThanOrEqual(3);
    expect(fixture.refusedRequests).toBe(0);
    const logged = lines.join("");
    expect(logged).toContain("access token obtained for MCP server");
    expect(logged).not.toContain(CLIENT_SECRET);
    for (const token of fixture.issued) expect(logged).not.toContain(token);
  });

  it("mcp client - a client-credentials token is reused until 80% of its lifetime, then replaced", async () => {
    const { fixture } = await oauthServer(10);
    const { log } = capture();
    let now = 1_000_000;
    const tokens = new ClientCredentialsTokens(
      {
        type: "client_credentials",
        tokenUrl: fixture.tokenUrl,
        clientId: "loom-worker",
        clientSecretEnv: "CRM_SECRET",
        clientAuthentication: "client_secret_basic",
      },
      CLIENT_SECRET,
      { server: "fixture", log, now: () => now },
    );
    const [first, same] = await Promise.all([tokens.token(), tokens.token()]);
    expect(same).toBe(first);
    now += 7_900;
    expect(await tokens.token()).toBe(first);
    now += 200;
    const renewed = await tokens.token();
    expect(renewed).not.toBe(first);
    expect(fixture.issued).toEqual([first, renewed]);
  });

  it("mcp client - a token the server stops taking is replaced on its 401 and the call goes through", async () => {
    const { fixture, entry } = await oauthServer(300);
    const { connection } = connect(entry("CRM_SECRET"), { CRM_SECRET: CLIENT_SECRET });
    await connection.callTool("echo", { text: "first" }, 5_000);
    fixture.revoke(fixture.issued.at(-1) ?? "");
    expect(text(await connection.callTool("echo", { text: "after revoke" }, 5_000))).toBe("after revoke");
    expect(fixture.refusedRequests).toBe(1);
    expect(fixture.issued).toHaveLength(2);
  });

  it("mcp client - a wrong client secret fails with SERVER_AUTH_FAILED naming the client and the variable", async () => {
    const { fixture, entry } = await oauthServer(300);
    const { connection } = connect(entry("CRM_SECRET"), { CRM_SECRET: "wrong-secret" });
    const failure = await connection.callTool("echo", { text: "x" }, 5_000).catch((e: unknown) => e);
    expect(failure).toBeInstanceOf(LoomError);
    expect((failure as LoomError).code).toBe(ErrorCode.SERVER_AUTH_FAILED);
    expect((failure as LoomError).message).toMatch(/refused client "loom-worker": invalid_client/);
    expect((failure as LoomError).message).toContain("CRM_SECRET");
    expect(fixture.refusedClients).toBe(1);
    expect(fixture.accepted.size).toBe(0);
  });

  it("mcp client - an HTTP server that wants a token and gets none fails with SERVER_AUTH_FAILED", async () => {
    const { fixture } = await oauthServer(300);
    const { connection } = connect({ transport: { type: "http", url: fixture.mcpUrl } });
    await expect(connection.listTools()).rejects.toMatchObject({ code: ErrorCode.SERVER_AUTH_FAILED });
  });
});

describe("mcp client - progress, logging and list changes", () => {
  it("mcp client - progress and log messages reach the call's observer; logging/setLevel is honoured", async () => {
    const ws = await startWsMcpServer(fixtureServer);
    disposables.push(ws);
    const chatty = connect({ transport: { type: "websocket", url: ws.url } }, {}, "debug");
    const progress: Progress[] = [];
    const logs: unknown[] = [];
    const result = await chatty.connection.callTool("slow_progress", { steps: 3 }, 5_000, {}, undefined, {
      onProgress: (reported) => progress.push(reported),
      onLog: (message) => logs.push(message),
    });
    expect(text(result)).toBe("done in 3 steps");
    expect(progress).toEqual([
      { progress: 1, total: 3, message: "step 1 of 3" },
      { progress: 2, total: 3, message: "step 2 of 3" },
      { progress: 3, total: 3, message: "step 3 of 3" },
    ]);
    expect(logs).toEqual([{ level: "info", logger: "fixture", data: "working in 3 steps" }]);

    // At level error the server keeps its info message to itself.
    const quiet = connect({ transport: { type: "websocket", url: ws.url } }, {}, "error");
    const quietLogs: unknown[] = [];
    await quiet.connection.callTool("slow_progress", { steps: 1 }, 5_000, {}, undefined, {
      onLog: (message) => quietLogs.push(message),
    });
    expect(quietLogs).toEqual([]);
  });

  it("mcp client - tools/list_changed is heard and the new list has the added tool, then loses it", async () => {
    const ws = await startWsMcpServer(fixtureServer);
    disposables.push(ws);
    const { connection } = connect({ transport: { type: "websocket", url: ws.url } });
    const changes: string[] = [];
    connection.onListChanged((kind) => changes.push(kind));
    await connection.callTool("add_tool", { name: "fresh" }, 5_000);
    await expect.poll(() => changes).toEqual(["tools"]);
    expect((await connection.listTools()).map((tool) => tool.name)).toContain("fresh");
    await connection.callTool("remove_tool", { name: "fresh" }, 5_000);
    await expect.poll(() => changes).toEqual(["tools", "tools"]);
    expect((await connection.listTools()).map((tool) => tool.name)).not.toContain("fresh");
  });
});
