import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { ResourceUpdatedNotificationSchema } from "@modelcontextprotocol/sdk/types.js";
import { Kvm } from "@nats-io/kv";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ServerHealthSchema } from "../../schemas/mcp-health.ts";
import { Buckets } from "../../schemas/subjects.ts";
import { eventually } from "../helpers/eventually.ts";
import { type Loom, REPO_ROOT, startLoom } from "../helpers/loom.ts";
import { freePort } from "../helpers/ports.ts";
import { tokenFor } from "../helpers/tokens.ts";

const EVERYTHING = join(REPO_ROOT, "node_modules/@modelcontextprotocol/server-everything/dist/index.js");
const SERVERS = `
servers:
  - name: everything
    transport: { type: stdio, command: node, args: ["${EVERYTHING}", stdio] }
    timeout: 20s
    governance: { owner: mcp-reference, data_classification: public, access_level: read }
`;
const WATCHED = "demo://resource/dynamic/text/5";

describe("fault - a gateway subscription outlives a SIGKILL of its MCP server", () => {
  let loom: Loom;
  let dir: string;
  let mcpUrl: URL;
  let client: Client;

  /** The pid of the everything server's (one) process, as the worker reports it. */
  async function serverPid(): Promise<number | undefined> {
    const kv = await new Kvm(loom.observer).open(Buckets.SERVERS);
    for await (const key of await kv.keys("everything.>")) {
      const entry = await kv.get(key);
      if (entry?.operation !== "PUT") continue;
      const health = ServerHealthSchema.parse(entry.json());
      const replica = health.versions[0]?.replicas[0];
      if (replica?.state === "up") return replica.pid;
    }
    return undefined;
  }

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "loom-subscription-crash-"));
    await writeFile(join(dir, "servers.yaml"), SERVERS);
    const port = await freePort();
    mcpUrl = new URL(`http://127.0.0.1:${port}/mcp`);
    loom = await startLoom({
      env: {
        LOOM_MCP_SERVERS: join(dir, "servers.yaml"),
        LOOM_A2A_PORT: String(port),
        OTEL_TRACES_EXPORTER: "none",
      },
      tools: ["everything.echo"],
      readyTimeoutMs: 120_000,
    });
  }, 180_000);
  afterAll(async () => {
    await client?.close();
    await loom?.[Symbol.asyncDispose]();
    await rm(dir, { recursive: true, force: true });
  });

  it("fault - the worker subscribes again on the restarted server, and updates reach the session again", async () => {
    client = new Client({ name: "subscription-crash", version: "1.0.0" });
    await client.connect(
      new StreamableHTTPClientTransport(mcpUrl, {
        requestInit: { headers: { Authorization: `Bearer ${tokenFor("ann", "admin")}` } },
      }),
    );
    const updates: string[] = [];
    client.setNotificationHandler(ResourceUpdatedNotificationSchema, (notification) => {
      updates.push(notification.params.uri);
    });
    await client.subscribeResource({ uri: WATCHED });
    const before = await eventually(serverPid, (pid) => pid !== undefined);
    process.kill(before ?? 0, "SIGKILL");
    await eventually(serverPid, (pid) => pid !== undefined && pid !== before, 60_000);
    // The new process starts with updates off and knows of no subscription but the one made again.
    await client.callTool({ name: "everything.toggle-subscriber-updates", arguments: {} });
    await eventually(
      () => updates,
      (heard) => heard.includes(WATCHED),
    );
    expect(updates.every((uri) => uri === WATCHED)).toBe(true);
  }, 120_000);
});
