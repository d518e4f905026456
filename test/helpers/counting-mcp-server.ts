/**
 * Test MCP server `gauges`: every tool call and resource read it serves appends one line to the
 * file named by COUNT_FILE, so a test can tell a read the server answered from one a cache did.
 * It reports version 2.1.0, which call records and `loom tools stats` must show. Gauge `broken`
 * answers with a tool error (`isError`).
 */
import { appendFileSync } from "node:fs";
import { McpServer, ResourceTemplate } from "@modelcontextprotocol/sdk/server/mcp.js";
import { StdioServerTransport } from "@modelcontextprotocol/sdk/server/stdio.js";
import { z } from "zod";

const countFile = process.env.COUNT_FILE;
if (countFile === undefined) throw new Error("set COUNT_FILE to the file that counts invocations");
const count = (line: string) => appendFileSync(countFile, `${line}\n`);

const gauge = (id: string) => ({ id, value: 42.5, unit: "bar", owner_email: "ops@example.com" });

const server = new McpServer({ name: "loom-test-gauges", version: "2.1.0" });

server.registerTool(
  "read_gauge",
  {
    description: "The current reading of one gauge (read-only).",
    inputSchema: { id: z.string() },
    outputSchema: { id: z.string(), value: z.number(), unit: z.string(), owner_email: z.string() },
    annotations: { readOnlyHint: true },
  },
  async ({ id }) => {
    count(`tool read_gauge ${id}`);
    if (id === "broken")
      return { isError: true, content: [{ type: "text", text: "gauge broken is offline" }] };
    const result = gauge(id);
    return { content: [{ type: "text", text: JSON.stringify(result) }], structuredContent: result };
  },
);

server.registerResource(
  "sheet",
  new ResourceTemplate("gauges://sheets/{id}", { list: undefined }),
  { description: "A gauge's data sheet as JSON", mimeType: "application/json" },
  async (uri, { id }) => {
    count(`resource ${uri.href}`);
    return {
      contents: [{ uri: uri.href, mimeType: "application/json", text: JSON.stringify(gauge(String(id))) }],
    };
  },
);

await server.connect(new StdioServerTransport());
