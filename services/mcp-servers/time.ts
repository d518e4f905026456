/** Demo MCP server `time`: tells the time, over stdio. */
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { StdioServerTransport } from "@modelcontextprotocol/sdk/server/stdio.js";
import { z } from "zod";
import { tracedTool, traceServer } from "./telemetry.ts";

traceServer("time");
const server = new McpServer({ name: "loom-demo-time", version: "1.0.0" });

server.registerTool(
  "get_time",
  {
    title: "Current time",
    description: "The current time as an ISO 8601 timestamp, in UTC or a named IANA time zone.",
    inputSchema: { timezone: z.string().default("UTC").describe("IANA time zone, for example Europe/Paris") },
    outputSchema: { iso: z.string(), timezone: z.string(), local: z.string() },
    annotations: { readOnlyHint: true, openWorldHint: false },
  },
  tracedTool("get_time", async ({ timezone }) => {
    const now = new Date();
    let local: string;
    try {
      local = now.toLocaleString("en-GB", { timeZone: timezone, timeZoneName: "short" });
    } catch {
      return { isError: true, content: [{ type: "text", text: `unknown time zone "${timezone}"` }] };
    }
    const result = { iso: now.toISOString(), timezone, local };
    return { content: [{ type: "text", text: JSON.stringify(result) }], structuredContent: result };
  }),
);

await server.connect(new StdioServerTransport());
