import { describe, expect, it } from "vitest";
import type { McpServerConfig } from "../../schemas/mcp.ts";
import { withCompileCache } from "../../services/mcp-worker/server-telemetry.ts";

const stdio = {
  name: "time",
  transport: { type: "stdio", command: "node", args: ["time.ts"], env: {} },
} as unknown as McpServerConfig;

describe("mcp-worker - stdio servers start on the worker's compile cache", () => {
  it("compile cache - a stdio server gets the worker's NODE_COMPILE_CACHE", () => {
    const prepared = withCompileCache(stdio, "/tmp/cache");
    expect(prepared.transport).toMatchObject({ env: { NODE_COMPILE_CACHE: "/tmp/cache" } });
  });

  it("compile cache - the entry's own setting wins, and without a cache nothing is added", () => {
    const own = {
      ...stdio,
      transport: { ...stdio.transport, env: { NODE_COMPILE_CACHE: "/own" } },
    } as McpServerConfig;
    expect(withCompileCache(own, "/tmp/cache").transport).toMatchObject({
      env: { NODE_COMPILE_CACHE: "/own" },
    });
    expect(withCompileCache(stdio, undefined)).toBe(stdio);
  });

  it("compile cache - a server over HTTP is left as it is", () => {
    const http = {
      name: "web",
      transport: { type: "http", url: "http://127.0.0.1:1/mcp" },
    } as unknown as McpServerConfig;
    expect(withCompileCache(http, "/tmp/cache")).toBe(http);
  });
});
