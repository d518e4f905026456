import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import {
  CreateMessageRequestSchema,
  ElicitRequestSchema,
  type Progress,
} from "@modelcontextprotocol/sdk/types.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ErrorCode } from "../../schemas/errors.ts";
import { tokenFor } from "../helpers/loom.ts";
import {
  escapeAttempts,
  gatewayErrorValue,
  gatewayReadValue,
  gatewayToolValue,
  linkUris,
  mismatches,
  type Outcome,
  PEER_SERVERS,
  type PeerCall,
  type PeerRead,
  type PeerServer,
  peerCalls,
  peerReadsAndPrompts,
  stepIdFor,
} from "../helpers/mcp-peers.ts";
import {
  OUTSIDER_ROLE,
  OUTSIDERS_RULE,
  PEER_TESTER_ROLE,
  type PeerStack,
  startPeerStack,
} from "../helpers/peer-stack.ts";
import { freePort } from "../helpers/ports.ts";

const TESTER = tokenFor("gail", PEER_TESTER_ROLE);
const OUTSIDER = tokenFor("otto", OUTSIDER_ROLE);

/** What one MCP client did with one peer through the gateway: each step's value, as `$steps` would. */
interface GatewayRun {
  /** The tools it called, as the gateway names them. */
  called: string[];
  outcomes: Map<string, Outcome>;
  values: Record<string, unknown>;
  /** notifications/progress the client received, per tool called. */
  progress: Map<string, Progress[]>;
}

describe("e2e - third-party MCP servers behind the worker, through the MCP gateway", () => {
  let stack: PeerStack;
  let mcpUrl: URL;
  let calls: Record<string, PeerCall>;
  /** tools/list as the test principal sees it. */
  let gatewayTools: string[];
  const clients: Client[] = [];
  const runs = new Map<PeerServer | "containment", Promise<GatewayRun>>();

  /**
   * A client as a desktop app is one: it samples with its own model and asks its user, so the
   * servers' sampling and elicitation requests during a call are relayed to it.
   */
  async function open(token: string): Promise<Client> {
    const client = new Client(
      { name: "peers-gateway-test", version: "1.0.0" },
      { capabilities: { sampling: {}, elicitation: {} } },
    );
    client.setRequestHandler(CreateMessageRequestSchema, (request) => {
      const last = request.params.messages.at(-1)?.content;
      const asked = last !== undefined && !Array.isArray(last) && last.type === "text" ? last.text : "";
      return {
        role: "assistant",
        model: "peers-client-model",
        content: { type: "text", text: `the client's model read: ${asked}` },
      };
    });
    client.setRequestHandler(ElicitRequestSchema, () => ({
      action: "accept",
      content: { name: "Ada Lovelace", check: true, email: "ada@example.com" },
    }));
    await client.connect(
      new StreamableHTTPClientTransport(mcpUrl, {
        requestInit: { headers: { Authorization: `Bearer ${token}` } },
      }),
    );
    clients.push(client);
    return client;
  }

  /** One tool call through the gateway, its value as a step's, its progress kept. */
  async function callTool(client: Client, name: string, args: Record<string, unknown>, run: GatewayRun) {
    const progress: Progress[] = [];
    run.progress.set(name, progress);
    try {
      const result = await client.callTool({ name, arguments: args }, undefined, {
        onprogress: (update) => progress.push(update),
      });
      return gatewayToolValue(result);
    } catch (error) {
      return gatewayErrorValue(error);
    }
  }

  async function readOrPrompt(client: Client, entry: PeerRead, values: Record<string, unknown>) {
    try {
      if ("prompt" in entry) return await client.getPrompt({ name: entry.prompt, arguments: entry.with });
      const { uri } = entry.read;
      const resolved = typeof uri === "string" ? uri : linkUris(values[uri.linkFrom])[0];
      if (resolved === undefined)
        throw new Error(`${entry.id}: the step it reads from returned no resource link`);
      return gatewayReadValue(await client.readResource({ uri: resolved }));
    } catch (error) {
      return gatewayErrorValue(error);
    }
  }

  /** Every tool of `server` the gateway lists, in the table's order, then its reads and prompts. */
  async function peerRun(server: PeerServer): Promise<GatewayRun> {
    const client = await open(TESTER);
    // The SDK client checks structured results against the output schemas it listed.
    await client.listTools();
    const run: GatewayRun = { called: [], outcomes: new Map(), values: {}, progress: new Map() };
    for (const [qualified, call] of Object.entries(calls)) {
      if (!qualified.startsWith(`${server}.`) || !gatewayTools.includes(qualified)) continue;
      const id = stepIdFor(qualified.slice(server.length + 1));
      run.values[id] = await callTool(client, qualified, call.with, run);
      run.outcomes.set(id, call.gateway ?? call);
      run.called.push(qualified);
    }
    for (const entry of peerReadsAndPrompts()[server]) {
      run.values[entry.id] = await readOrPrompt(client, entry, run.values);
      run.outcomes.set(entry.id, entry);
    }
    return run;
  }

  /** The escape attempts, after server-filesystem's own run so the two never race on its files. */
  async function containmentRun(afterFilesystem: Promise<unknown>): Promise<GatewayRun> {
    await afterFilesystem.catch(() => undefined);
    const client = await open(TESTER);
    const run: GatewayRun = { called: [], outcomes: new Map(), values: {}, progress: new Map() };
    for (const [id, { call, with: args, ...outcome }] of Object.entries(escapeAttempts(stack.sandbox))) {
      run.values[id] = await callTool(client, call, args, run);
      run.outcomes.set(id, outcome as Outcome);
    }
    return run;
  }

  beforeAll(async () => {
    const port = await freePort();
    mcpUrl = new URL(`http://127.0.0.1:${port}/mcp`);
    stack = await startPeerStack({ LOOM_A2A_PORT: String(port) });
    calls = peerCalls(stack.sandbox);
    gatewayTools = (await (await open(TESTER)).listTools()).tools.map((tool) => tool.name);
    // The three peers at once, each through its own session; a failed run fails its own test.
    for (const server of PEER_SERVERS) {
      const run = peerRun(server);
      run.catch(() => undefined);
      runs.set(server, run);
    }
    const containment = containmentRun(runs.get("filesystem") ?? Promise.resolve());
    containment.catch(() => undefined);
    runs.set("containment", containment);
  });

  afterAll(async () => {
    await Promise.allSettled(runs.values());
    await Promise.allSettled(clients.map((client) => client.close()));
    await stack?.[Symbol.asyncDispose]();
  });

  async function finished(name: PeerServer | "containment"): Promise<GatewayRun> {
    const run = runs.get(name);
    if (run === undefined) throw new Error(`no run for ${name}`);
    return run;
  }

  it("mcp peers gateway - tools/list shows the test principal every tool of the three peers, as server.tool", () => {
    const registered = stack.listed.map((tool) => `${tool.server}.${tool.name}`);
    expect(new Set(stack.listed.map((tool) => tool.server))).toEqual(new Set(PEER_SERVERS));
    expect([...gatewayTools].sort()).toEqual([...registered].sort());
    const missing = gatewayTools.filter((name) => calls[name] === undefined);
    expect(missing, "add arguments and an expected outcome for these tools to peerCalls").toEqual([]);
  });

  it.each(PEER_SERVERS)(
    "mcp peers gateway - every tool, resource and prompt of %s answers through tools/call, resources/read and prompts/get",
    async (server) => {
      const run = await finished(server);
      expect([...run.called].sort()).toEqual(
        gatewayTools.filter((name) => name.startsWith(`${server}.`)).sort(),
      );
      expect(mismatches(run.values, run.outcomes)).toEqual([]);
    },
  );

  it("mcp peers gateway - what the calls did is on disk: server-filesystem's files and server-memory's graph", async () => {
    await finished("filesystem");
    await finished("memory");
    expect(await readFile(join(stack.sandbox.root, "docs", "moved.txt"), "utf8")).toBe("alpha\ngamma\n");
    expect((await readdir(join(stack.sandbox.root, "docs"))).sort()).toEqual(["moved.txt"]);
    const lines = (await readFile(stack.sandbox.memoryFile, "utf8")).trim().split("\n");
    expect(lines.map((line) => JSON.parse(line))).toEqual([
      { type: "entity", name: "Ada", entityType: "person", observations: ["wrote the first program"] },
    ]);
  });

  it("mcp peers gateway - server-filesystem refuses every way out of its directory through the gateway too", async () => {
    const run = await finished("containment");
    expect(mismatches(run.values, run.outcomes)).toEqual([]);
    expect(await readdir(stack.sandbox.outside)).toEqual([]);
  });

  it("mcp peers gateway - resources, resource templates and prompts of the peers are listed under their servers' names", async () => {
    await finished("everything");
    const client = await open(TESTER);
    const resources = (await client.listResources()).resources;
    const read = Object.values(peerReadsAndPrompts()).flatMap((entries) =>
      entries.flatMap((entry) =>
        "read" in entry && typeof entry.read.uri === "string" ? [entry.read.uri] : [],
      ),
    );
    const listed = resources.map((resource) => resource.uri);
    // Every resource a peer lists is one the table reads (and checks the content of), and so is
    // the one a tool made: the gateway learnt of it from the server's list_changed.
    expect([...read, "demo://resource/session/greeting.txt.gz"]).toEqual(expect.arrayContaining(listed));
    expect(listed).toContain("demo://resource/session/greeting.txt.gz");
    for (const resource of resources) expect(resource.name).toMatch(/^(everything|filesystem|memory)\./);
    const templates = (await client.listResourceTemplates()).resourceTemplates.map((t) => t.uriTemplate);
    expect(templates).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^demo:\/\/resource\/dynamic\/text\/\{\w+\}$/),
        expect.stringMatching(/^demo:\/\/resource\/dynamic\/blob\/\{\w+\}$/),
      ]),
    );
    const prompts = (await client.listPrompts()).prompts.map((prompt) => prompt.name);
    const gotten = Object.values(peerReadsAndPrompts()).flatMap((entries) =>
      entries.flatMap((entry) => ("prompt" in entry ? [entry.prompt] : [])),
    );
    // Every prompt a peer lists is gotten through the gateway, its messages checked.
    expect([...prompts].sort()).toEqual([...new Set(gotten)].sort());
  });

  it("mcp peers gateway - a resource link a tool returns can be read at once through the gateway", async () => {
    const client = await open(TESTER);
    const data = Buffer.from("read me right away").toString("base64");
    const made = await client.callTool({
      name: "everything.gzip-file-as-resource",
      arguments: {
        name: "at-once.txt.gz",
        data: `data:text/plain;base64,${data}`,
        outputType: "resourceLink",
      },
    });
    const [uri] = linkUris(gatewayToolValue(made));
    expect(uri).toBe("demo://resource/session/at-once.txt.gz");
    const read = await client.readResource({ uri: uri ?? "" });
    const contents = read.contents[0];
    expect(
      contents !== undefined && "blob" in contents
        ? gunzipSync(Buffer.from(contents.blob, "base64")).toString()
        : "",
    ).toBe("read me right away");
  });

  it("mcp peers gateway - a progress-emitting tool called with a progressToken sends the client notifications/progress", async () => {
    const run = await finished("everything");
    expect(run.progress.get("everything.trigger-long-running-operation")).toEqual([
      expect.objectContaining({ progress: 1, total: 2 }),
      expect.objectContaining({ progress: 2, total: 2 }),
    ]);
  });

  it("mcp peers gateway - a principal policy keeps away sees none of the peers and is refused by the rule when it calls anyway", async () => {
    const client = await open(OUTSIDER);
    expect((await client.listTools()).tools).toEqual([]);
    expect((await client.listResources()).resources).toEqual([]);
    expect((await client.listResourceTemplates()).resourceTemplates).toEqual([]);
    expect((await client.listPrompts()).prompts).toEqual([]);
    const denied = await client.callTool({ name: "everything.echo", arguments: { message: "let me in" } });
    expect(gatewayToolValue(denied)).toEqual({
      error: expect.objectContaining({
        code: ErrorCode.POLICY_DENIED,
        message: expect.stringContaining(OUTSIDERS_RULE),
      }),
    });
    const refusal = {
      error: expect.objectContaining({
        code: ErrorCode.POLICY_DENIED,
        message: expect.stringContaining(OUTSIDERS_RULE),
      }),
    };
    expect(await client.getPrompt({ name: "everything.simple-prompt" }).catch(gatewayErrorValue)).toEqual(
      refusal,
    );
    expect(await client.readResource({ uri: "memory://knowledge-graph" }).catch(gatewayErrorValue)).toEqual(
      refusal,
    );
  });
});
