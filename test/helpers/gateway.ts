import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { ResourceUpdatedNotificationSchema } from "@modelcontextprotocol/sdk/types.js";
import { type Loom, REPO_ROOT, startLoom } from "./loom.ts";
import { freePort } from "./ports.ts";

const EVERYTHING = join(REPO_ROOT, "node_modules/@modelcontextprotocol/server-everything/dist/index.js");

/** The MCP servers a gateway test may put behind the gateway, as `servers.yaml` entries. */
const SERVER_ENTRIES = {
  time: `  - name: time
    transport: { type: stdio, command: node, args: ["${join(REPO_ROOT, "services/mcp-servers/time.ts")}"] }
    governance: { owner: platform-team, data_classification: public, access_level: read }`,
  crm: `  - name: crm
    transport: { type: stdio, command: node, args: ["${join(REPO_ROOT, "services/mcp-servers/crm.ts")}"] }
    governance: { owner: sales-ops, data_classification: restricted, access_level: write, region: eu }`,
  everything: `  - name: everything
    transport: { type: stdio, command: node, args: ["${EVERYTHING}", stdio] }
    timeout: 20s
    governance: { owner: mcp-reference, data_classification: public, access_level: read }`,
} as const;
export type GatewayServer = keyof typeof SERVER_ENTRIES;

export interface GatewayStackOptions {
  /** The temp dir's name prefix. */
  prefix: string;
  servers: readonly GatewayServer[];
  /** Tools the stack waits for before it is ready. */
  tools: string[];
  /** More files in the stack's dir, by path relative to it (policies, dev clients...). */
  files?: Record<string, string>;
  /** More environment, given the stack's dir. */
  env?: (dir: string) => Record<string, string>;
  readyTimeoutMs?: number;
}

/** A gateway client: a session, its id, and the resource updates its GET stream brought. */
export interface GatewaySession {
  client: Client;
  sessionId: string;
  updates: string[];
}

/** A stack whose MCP gateway listens on a known port, with sessions closed when it is disposed. */
export interface GatewayStack extends AsyncDisposable {
  loom: Loom;
  /** The temp dir with `servers.yaml` and the other files; removed on dispose. */
  dir: string;
  /** `http://127.0.0.1:<port>`, the orchestrator's HTTP edge. */
  base: string;
  mcpUrl: URL;
  /** Opens a session as `token` (or rejoins `sessionId`), collecting the resource updates it hears. */
  session(token: string, options?: { sessionId?: string; name?: string }): Promise<GatewaySession>;
  /** A client opened some other way (OAuth, capabilities), closed with the stack. */
  track<T extends Client>(client: T): T;
}

/** Starts a stack with `servers` behind the MCP gateway at a free port, traces off. */
export async function startGateway(options: GatewayStackOptions): Promise<GatewayStack> {
  const dir = await mkdtemp(join(tmpdir(), options.prefix));
  const servers = options.servers.map((name) => SERVER_ENTRIES[name]).join("\n");
  await writeFile(join(dir, "servers.yaml"), `servers:\n${servers}\n`);
  for (const [path, contents] of Object.entries(options.files ?? {})) {
    await mkdir(dirname(join(dir, path)), { recursive: true });
    await writeFile(join(dir, path), contents);
  }
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const mcpUrl = new URL(`${base}/mcp`);
  const clients: Client[] = [];
  const loom = await startLoom({
    env: {
      LOOM_MCP_SERVERS: join(dir, "servers.yaml"),
      LOOM_A2A_PORT: String(port),
      // No collector listens here: a restart would wait for span exports to time out.
      OTEL_TRACES_EXPORTER: "none",
      ...options.env?.(dir),
    },
    tools: options.tools,
    ...(options.readyTimeoutMs === undefined ? {} : { readyTimeoutMs: options.readyTimeoutMs }),
  }).catch(async (error: unknown) => {
    await rm(dir, { recursive: true, force: true });
    throw error;
  });
  const track = <T extends Client>(client: T): T => {
    clients.push(client);
    return client;
  };
  return {
    loom,
    dir,
    base,
    mcpUrl,
    track,
    async session(token, { sessionId, name = "gateway-test" } = {}) {
      const client = track(new Client({ name, version: "1.0.0" }));
      const transport = new StreamableHTTPClientTransport(mcpUrl, {
        requestInit: { headers: { Authorization: `Bearer ${token}` } },
        ...(sessionId === undefined ? {} : { sessionId }),
      });
      await client.connect(transport);
      const updates: string[] = [];
      client.setNotificationHandler(ResourceUpdatedNotificationSchema, (notification) => {
        updates.push(notification.params.uri);
      });
      return { client, sessionId: transport.sessionId ?? "", updates };
    },
    async [Symbol.asyncDispose]() {
      await Promise.all(clients.map((client) => client.close()));
      await loom[Symbol.asyncDispose]();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
