import type { CallToolResult, GetPromptResult, ReadResourceResult } from "@modelcontextprotocol/sdk/types.js";
import { describe, expect, it } from "vitest";
import { ErrorCode } from "../../schemas/errors.ts";
import { McpServerConfigSchema } from "../../schemas/mcp.ts";
import type { ToolCallRecord } from "../../schemas/tool-calls.ts";
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
  const records: ToolCallRecord[] = [];
  const observer = new CallObserver({
    append: async (record) => {
      records.push(record);
    },
  });
  return { connection, calls, records, observer };
}

const step = { runId: "r-1", stepId: "gauge" };

describe("mcp-worker - call records and the read cache around every MCP call", () => {
  it("records - every call is recorded with its server version, outcome, run and step", async () => {
    const { connection, records, observer } = server();
    await observer.around(connection, step).callTool("read_gauge", { id: "g-1" }, 1_000);
    await observer.around(connection, undefined).readResource("gauges://sheets/g-1", 1_000);
    expect(records).toMatchObject([
      {
        type: "call",
        server: "gauges",
        target: "read_gauge",
        kind: "tool",
        serverVersion: "2.1.0",
        outcome: "ok",
        cached: false,
        runId: "r-1",
        stepId: "gauge",
      },
      { target: "gauges://sheets/g-1", kind: "resource", outcome: "ok", cached: false },
    ]);
    expect(records[1]).not.toHaveProperty("runId");
    expect(records[0]?.latencyMs).toBeGreaterThanOrEqual(0);
  });

  it("records - the version A/B routing chose wins over the one the server reported", async () => {
    const { connection, records, observer } = server();
    await observer.around(connection, step, "canary").callTool("read_gauge", { id: "g-1" }, 1_000);
    expect(records[0]?.serverVersion).toBe("canary");
  });

  it("records - a thrown error is recorded with its code and rethrown", async () => {
    const { connection, records, observer } = server();
    await expect(observer.around(connection, step).callTool("explode", {}, 1_000)).rejects.toThrow(
      "too slow",
    );
    expect(records[0]).toMatchObject({ target: "explode", outcome: "TOOL_TIMEOUT", cached: false });
  });

  it("cache - a server without cache config is always called", async () => {
    const { connection, calls, records, observer } = server();
    const calling = observer.around(connection, step);
    await calling.callTool("read_gauge", { id: "g-1" }, 1_000);
    await calling.callTool("read_gauge", { id: "g-1" }, 1_000);
    expect(calls).toHaveLength(2);
    expect(records.map((record) => record.cached)).toEqual([false, false]);
  });

  it("cache - a listed tool is answered from memory for the same arguments only", async () => {
    const { connection, calls, records, observer } = server({ ttl: "30s", tools: ["read_gauge"] });
    const calling = observer.around(connection, step);
    const first = await calling.callTool("read_gauge", { id: "g-1", unit: "bar" }, 1_000);
    const again = await calling.callTool("read_gauge", { unit: "bar", id: "g-1" }, 1_000);
    await calling.callTool("read_gauge", { id: "g-2", unit: "bar" }, 1_000);
    expect(again).toEqual(first);
    expect(calls).toEqual([
      'tool read_gauge {"id":"g-1","unit":"bar"}',
      'tool read_gauge {"id":"g-2","unit":"bar"}',
    ]);
    expect(records.map((record) => [record.target, record.cached, record.serverVersion])).toEqual([
      ["read_gauge", false, "2.1.0"],
      ["read_gauge", true, "2.1.0"],
      ["read_gauge", false, "2.1.0"],
    ]);
  });

  it("cache - tools not listed, prompts, and resources without resources: true are not cached", async () => {
    const { connection, calls, observer } = server({ ttl: "30s", tools: ["read_gauge"] });
    const calling = observer.around(connection, step);
    for (let round = 0; round < 2; round++) {
      await calling.callTool("set_gauge", { id: "g-1" }, 1_000);
      await calling.getPrompt("summarize", {}, 1_000);
      await calling.readResource("gauges://sheets/g-1", 1_000);
    }
    expect(calls).toHaveLength(6);
  });

  it("cache - resources: true caches resource reads by URI", async () => {
    const { connection, calls, records, observer } = server({ ttl: "30s", resources: true });
    const calling = observer.around(connection, step);
    await calling.readResource("gauges://sheets/g-1", 1_000);
    await calling.readResource("gauges://sheets/g-1", 1_000);
    await calling.readResource("gauges://sheets/g-2", 1_000);
    expect(calls).toEqual(["resource gauges://sheets/g-1", "resource gauges://sheets/g-2"]);
    expect(records.map((record) => record.cached)).toEqual([false, true, false]);
  });

  it("cache - a tool error (isError) is recorded as TOOL_ERROR and never cached", async () => {
    const { connection, calls, records, observer } = server({ ttl: "30s", tools: ["read_gauge"] });
    const calling = observer.around(connection, step);
    await calling.callTool("read_gauge", { id: "broken" }, 1_000);
    await calling.callTool("read_gauge", { id: "broken" }, 1_000);
    expect(calls).toHaveLength(2);
    expect(records.map((record) => [record.outcome, record.cached])).toEqual([
      ["TOOL_ERROR", false],
      ["TOOL_ERROR", false],
    ]);
  });

  it("cache - two servers with the same tool name never share answers", async () => {
    const a = server({ ttl: "30s", tools: ["read_gauge"] });
    const b = server({ ttl: "30s", tools: ["read_gauge"] });
    const other: ObservableConnection = {
      ...b.connection,
      config: { ...b.connection.config, name: "other" },
    };
    await a.observer.around(a.connection, step).callTool("read_gauge", { id: "g-1" }, 1_000);
    await a.observer.around(other, step).callTool("read_gauge", { id: "g-1" }, 1_000);
    expect(a.calls).toHaveLength(1);
    expect(b.calls).toHaveLength(1);
  });
});
