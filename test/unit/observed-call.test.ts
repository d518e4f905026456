import type { CallToolResult, GetPromptResult, ReadResourceResult } from "@modelcontextprotocol/sdk/types.js";
import { describe, expect, it } from "vitest";
import type { ExecutedCall } from "../../schemas/audit.ts";
import { ErrorCode } from "../../schemas/errors.ts";
import { McpServerConfigSchema } from "../../schemas/mcp.ts";
import { LoomError } from "../../services/kit/errors.ts";
import { CallObserver, type ObservableConnection } from "../../services/mcp-worker/observed-call.ts";

/** An in-memory MCP server stand-in that counts what reaches it; this is a unit test of the hook alone. */
function server(cache?: Record<string, unknown>) {
  const calls: string[] = [];
  const connection: ObservableConnection = {
    config: McpServerConfigSchema.parse({
      name: "gauges",
      transport: { type: "stdio", command: "node" },
      governance: { owner: "t", data_classification: "public", access_level: "read" },
      ...(cache === undefined ? {} : { cache }),
    }),
    serverVersion: "2.1.0",
    async callTool(name, args) {
      calls.push(`tool ${name} ${JSON.stringify(args)}`);
      if (name === "explode") throw new LoomError(ErrorCode.TOOL_TIMEOUT, "too slow");
      const result: CallToolResult = {
        content: [{ type: "text", text: "reading" }],
        structuredContent: { id: args.id, owner_email: "ops@example.com" },
        ...(args.id === "broken" ? { isError: true } : {}),
      };
      return result;
    },
    async readResource(uri) {
      calls.push(`resource ${uri}`);
      const result: ReadResourceResult = { contents: [{ uri, text: "sheet" }] };
      return result;
    },
    async getPrompt(name) {
      calls.push(`prompt ${name}`);
      const result: GetPromptResult = { messages: [] };
      return result;
    },
    async withClient() {
      throw new LoomError(ErrorCode.INTERNAL, "completions are not observed");
    },
  };
  const observer = new CallObserver();
  /** What each task noted of its call, for its execution record, in the order the tasks came. */
  const notes: ExecutedCall[] = [];
  /** One task's calls through the observer, on `on` (this server by default). */
  const task = (version?: string, on: ObservableConnection = connection) => {
    const executed: ExecutedCall = {};
    notes.push(executed);
    return observer.around(on, executed, version);
  };
  return { connection, calls, notes, observer, task };
}

describe("mcp-worker - the read cache and the call notes around every MCP call", () => {
  it("notes - a call notes the version the server reported and that it was not cached", async () => {
    const { notes, task } = server();
    await task().callTool("read_gauge", { id: "g-1" }, 1_000);
    await task().readResource("gauges://sheets/g-1", 1_000);
    await task().getPrompt("summarize", {}, 1_000);
    expect(notes).toEqual([
      { serverVersion: "2.1.0", cached: false },
      { serverVersion: "2.1.0", cached: false },
      { serverVersion: "2.1.0", cached: false },
    ]);
  });

  it("notes - the version A/B routing chose wins over the one the server reported", async () => {
    const { notes, task } = server();
    await task("canary").callTool("read_gauge", { id: "g-1" }, 1_000);
    expect(notes).toEqual([{ serverVersion: "canary", cached: false }]);
  });

  it("notes - a thrown error is noted as a call and rethrown", async () => {
    const { notes, task } = server();
    await expect(task().callTool("explode", {}, 1_000)).rejects.toThrow("too slow");
    expect(notes).toEqual([{ serverVersion: "2.1.0", cached: false }]);
  });

  it("notes - completions are no calls: nothing is noted", async () => {
    const { notes, task } = server();
    await expect(task().withClient("complete", 1_000, async () => "x")).rejects.toThrow("not observed");
    expect(notes).toEqual([{}]);
  });

  it("cache - a server without cache config is always called", async () => {
    const { calls, notes, task } = server();
    await task().callTool("read_gauge", { id: "g-1" }, 1_000);
    await task().callTool("read_gauge", { id: "g-1" }, 1_000);
    expect(calls).toHaveLength(2);
    expect(notes.map((note) => note.cached)).toEqual([false, false]);
  });

  it("cache - a listed tool is answered from memory for the same arguments only", async () => {
    const { calls, notes, task } = server({ ttl: "30s", tools: ["read_gauge"] });
    const first = await task().callTool("read_gauge", { id: "g-1", unit: "bar" }, 1_000);
    const again = await task().callTool("read_gauge", { unit: "bar", id: "g-1" }, 1_000);
    await task().callTool("read_gauge", { id: "g-2", unit: "bar" }, 1_000);
    expect(again).toEqual(first);
    expect(calls).toEqual([
      'tool read_gauge {"id":"g-1","unit":"bar"}',
      'tool read_gauge {"id":"g-2","unit":"bar"}',
    ]);
    expect(notes).toEqual([
      { serverVersion: "2.1.0", cached: false },
      { serverVersion: "2.1.0", cached: true },
      { serverVersion: "2.1.0", cached: false },
    ]);
  });

  it("cache - a cached answer names the version that gave it, not the one routing chose now", async () => {
    const { notes, task } = server({ ttl: "30s", tools: ["read_gauge"] });
    await task("stable").callTool("read_gauge", { id: "g-1" }, 1_000);
    await task("canary").callTool("read_gauge", { id: "g-1" }, 1_000);
    expect(notes).toEqual([
      { serverVersion: "stable", cached: false },
      { serverVersion: "stable", cached: true },
    ]);
  });

  it("cache - tools not listed, prompts, and resources without resources: true are not cached", async () => {
    const { calls, task } = server({ ttl: "30s", tools: ["read_gauge"] });
    for (let round = 0; round < 2; round++) {
      await task().callTool("set_gauge", { id: "g-1" }, 1_000);
      await task().getPrompt("summarize", {}, 1_000);
      await task().readResource("gauges://sheets/g-1", 1_000);
    }
    expect(calls).toHaveLength(6);
  });

  it("cache - resources: true caches resource reads by URI", async () => {
    const { calls, notes, task } = server({ ttl: "30s", resources: true });
    await task().readResource("gauges://sheets/g-1", 1_000);
    await task().readResource("gauges://sheets/g-1", 1_000);
    await task().readResource("gauges://sheets/g-2", 1_000);
    expect(calls).toEqual(["resource gauges://sheets/g-1", "resource gauges://sheets/g-2"]);
    expect(notes.map((note) => note.cached)).toEqual([false, true, false]);
  });

  it("cache - a tool error (isError) is never cached", async () => {
    const { calls, notes, task } = server({ ttl: "30s", tools: ["read_gauge"] });
    await task().callTool("read_gauge", { id: "broken" }, 1_000);
    await task().callTool("read_gauge", { id: "broken" }, 1_000);
    expect(calls).toHaveLength(2);
    expect(notes.map((note) => note.cached)).toEqual([false, false]);
  });

  it("cache - two servers with the same tool name never share answers", async () => {
    const a = server({ ttl: "30s", tools: ["read_gauge"] });
    const b = server({ ttl: "30s", tools: ["read_gauge"] });
    const other: ObservableConnection = {
      ...b.connection,
      config: { ...b.connection.config, name: "other" },
    };
    await a.task().callTool("read_gauge", { id: "g-1" }, 1_000);
    await a.task(undefined, other).callTool("read_gauge", { id: "g-1" }, 1_000);
    expect(a.calls).toHaveLength(1);
    expect(b.calls).toHaveLength(1);
  });
});
