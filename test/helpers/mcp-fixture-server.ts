import { Server } from "@modelcontextprotocol/sdk/server/index.js";
import {
  CallToolRequestSchema,
  ListToolsRequestSchema,
  McpError,
  ErrorCode as McpErrorCode,
  type Tool,
} from "@modelcontextprotocol/sdk/types.js";

const OBJECT = { type: "object" } as const;
const VALUE_SCHEMA: Tool["inputSchema"] = {
  type: "object",
  properties: { value: { type: "number" } },
  required: ["value"],
};

/**
 * A small MCP server for the worker's client features: tools that appear and disappear on request
 * (with notifications/tools/list_changed), tools whose structuredContent fits, is missing from or
 * breaks their outputSchema, and one that reports progress and logs while it works.
 */
export function fixtureServer(): Server {
  const added = new Map<string, Tool>();
  const base: Tool[] = [
    {
      name: "echo",
      description: "Answers with its text.",
      inputSchema: { ...OBJECT, properties: { text: { type: "string" } }, required: ["text"] },
    },
    {
      name: "add_tool",
      description: "Adds a tool named `name` (it echoes) and says the tool list changed.",
      inputSchema: { ...OBJECT, properties: { name: { type: "string" } }, required: ["name"] },
    },
    {
      name: "remove_tool",
      description: "Removes a tool add_tool added and says the tool list changed.",
      inputSchema: { ...OBJECT, properties: { name: { type: "string" } }, required: ["name"] },
    },
    { name: "structured_ok", inputSchema: OBJECT, outputSchema: VALUE_SCHEMA },
    { name: "structured_missing", inputSchema: OBJECT, outputSchema: VALUE_SCHEMA },
    { name: "structured_wrong", inputSchema: OBJECT, outputSchema: VALUE_SCHEMA },
    {
      name: "slow_progress",
      description: "Reports `steps` progress notifications and one log message, then answers.",
      inputSchema: { ...OBJECT, properties: { steps: { type: "number" } } },
    },
  ];
  const server = new Server(
    { name: "loom-fixture", version: "1.0.0" },
    { capabilities: { tools: { listChanged: true }, logging: {} } },
  );
  server.setRequestHandler(ListToolsRequestSchema, () => ({ tools: [...base, ...added.values()] }));
  server.setRequestHandler(CallToolRequestSchema, async (request, extra) => {
    const { name } = request.params;
    const args = request.params.arguments ?? {};
    const text = (value: string) => ({ content: [{ type: "text" as const, text: value }] });
    switch (name) {
      case "echo":
        return text(String(args.text));
      case "add_tool": {
        const tool = String(args.name);
        added.set(tool, { name: tool, description: `Added on request: ${tool}`, inputSchema: OBJECT });
        await server.sendToolListChanged();
        return text(`added ${tool}`);
      }
      case "remove_tool": {
        added.delete(String(args.name));
        await server.sendToolListChanged();
        return text(`removed ${String(args.name)}`);
      }
      case "structured_ok":
        return { ...text("1"), structuredContent: { value: 1 } };
      case "structured_missing":
        return text("no structured content");
      case "structured_wrong":
        return { ...text("wrong"), structuredContent: { value: "not a number" } };
      case "slow_progress": {
        const steps = typeof args.steps === "number" ? args.steps : 3;
        const token = request.params._meta?.progressToken;
        await server.sendLoggingMessage({
          level: "info",
          logger: "fixture",
          data: `working in ${steps} steps`,
        });
        for (let step = 1; step <= steps; step++) {
          await new Promise((resolve) => setTimeout(resolve, 50));
          if (token !== undefined) {
            await extra.sendNotification({
              method: "notifications/progress",
              params: {
                progressToken: token,
                progress: step,
                total: steps,
                message: `step ${step} of ${steps}`,
              },
            });
          }
        }
        return text(`done in ${steps} steps`);
      }
      default:
        if (added.has(name)) return text(`${name} ran`);
        throw new McpError(McpErrorCode.InvalidParams, `no tool ${name}`);
    }
  });
  return server;
}
