import { Kvm } from "@nats-io/kv";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ServerHealthSchema } from "../../schemas/mcp-health.ts";
import { Buckets } from "../../schemas/subjects.ts";
import { eventually } from "../helpers/eventually.ts";
import { type GatewayStack, startGateway } from "../helpers/gateway.ts";
import { tokenFor } from "../helpers/tokens.ts";

const WATCHED = "demo://resource/dynamic/text/5";

describe("fault - a gateway subscription outlives a SIGKILL of its MCP server", () => {
  let gateway: GatewayStack;

  /** The pid of the everything server's (one) process, as the worker reports it. */
  async function serverPid(): Promise<number | undefined> {
    const kv = await new Kvm(gateway.loom.observer).open(Buckets.SERVERS);
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
    gateway = await startGateway({
      prefix: "loom-subscription-crash-",
      servers: ["everything"],
      tools: ["everything.echo"],
      readyTimeoutMs: 120_000,
    });
  }, 180_000);
  afterAll(async () => {
    await gateway?.[Symbol.asyncDispose]();
  });

  it("fault - the worker subscribes again on the restarted server, and updates reach the session again", async () => {
    const { client, updates } = await gateway.session(tokenFor("ann", "admin"), {
      name: "subscription-crash",
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
