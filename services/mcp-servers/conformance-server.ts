/**
 * The MCP server the conformance suite (`@modelcontextprotocol/conformance server`) expects: every
 * tool, resource, resource template and prompt its server scenarios call, by the names and with the
 * shapes they check. Transport-free so the same server runs over stdio (behind the mcp-worker) and
 * over Streamable HTTP (checked alone).
 */
import { completable } from "@modelcontextprotocol/sdk/server/completable.js";
import { McpServer, ResourceTemplate } from "@modelcontextprotocol/sdk/server/mcp.js";
import type { RequestHandlerExtra } from "@modelcontextprotocol/sdk/shared/protocol.js";
import {
  CallToolRequestSchema,
  type CallToolResult,
  CreateMessageResultSchema,
  type ElicitRequestFormParams,
  ElicitResultSchema,
  ErrorCode,
  ListToolsRequestSchema,
  type LoggingLevel,
  LoggingLevelSchema,
  McpError,
  type ServerNotification,
  type ServerRequest,
  SetLevelRequestSchema,
  SubscribeRequestSchema,
  type Tool,
  UnsubscribeRequestSchema,
} from "@modelcontextprotocol/sdk/types.js";
import { z } from "zod";

/** A 1x1 red PNG. */
const PNG_BASE64 =
  "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==";

/** A WAV file with a valid RIFF header and one silent 16-bit mono sample. */
const WAV_BASE64 = (() => {
  const header = Buffer.alloc(46);
  header.write("RIFF", 0);
  header.writeUInt32LE(38, 4);
  header.write("WAVEfmt ", 8);
  header.writeUInt32LE(16, 16);
  header.writeUInt16LE(1, 20); // PCM
  header.writeUInt16LE(1, 22); // mono
  header.writeUInt32LE(8000, 24);
  header.writeUInt32LE(16000, 28);
  header.writeUInt16LE(2, 32);
  header.writeUInt16LE(16, 34);
  header.write("data", 36);
  header.writeUInt32LE(2, 40);
  return header.toString("base64");
})();

type Extra = RequestHandlerExtra<ServerRequest, ServerNotification>;

interface FixtureTool {
  definition: Tool;
  run(
    args: Record<string, unknown>,
    extra: Extra,
    log: (level: LoggingLevel, data: string) => Promise<void>,
  ): Promise<CallToolResult>;
}

const NO_ARGS = { type: "object", properties: {} } as const;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const text = (value: string): CallToolResult => ({ content: [{ type: "text", text: value }] });

/**
 * Tools go through the low-level handlers, not McpServer.registerTool, because the suite checks
 * JSON Schema 2020-12 keywords ($schema, $defs) that a zod-derived schema cannot carry.
 */
const TOOLS: FixtureTool[] = [
  {
    definition: { name: "test_simple_text", description: "Returns one text block.", inputSchema: NO_ARGS },
    run: async () => text("This is a simple text response for testing."),
  },
  {
    definition: { name: "test_image_content", description: "Returns a PNG image.", inputSchema: NO_ARGS },
    run: async () => ({ content: [{ type: "image", data: PNG_BASE64, mimeType: "image/png" }] }),
  },
  {
    definition: { name: "test_audio_content", description: "Returns a WAV clip.", inputSchema: NO_ARGS },
    run: async () => ({ content: [{ type: "audio", data: WAV_BASE64, mimeType: "audio/wav" }] }),
  },
  {
    definition: {
      name: "test_embedded_resource",
      description: "Returns an embedded text resource.",
      inputSchema: NO_ARGS,
    },
    run: async () => ({
      content: [
        {
          type: "resource",
          resource: {
            uri: "test://embedded-resource",
            mimeType: "text/plain",
            text: "This is an embedded resource content.",
          },
        },
      ],
    }),
  },
  {
    definition: {
      name: "test_multiple_content_types",
      description: "Returns text, an image and an embedded resource.",
      inputSchema: NO_ARGS,
    },
    run: async () => ({
      content: [
        { type: "text", text: "Multiple content types test:" },
        { type: "image", data: PNG_BASE64, mimeType: "image/png" },
        {
          type: "resource",
          resource: {
            uri: "test://mixed-content-resource",
            mimeType: "application/json",
            text: JSON.stringify({ test: "data", value: 123 }),
          },
        },
      ],
    }),
  },
  {
    definition: {
      name: "test_tool_with_logging",
      description: "Logs three info messages while it runs.",
      inputSchema: NO_ARGS,
    },
    run: async (_args, _extra, log) => {
      await log("info", "Tool execution started");
      await sleep(50);
      await log("info", "Tool processing data");
      await sleep(50);
      await log("info", "Tool execution completed");
      return text("Tool with logging executed successfully");
    },
  },
  {
    definition: {
      name: "test_tool_with_progress",
      description: "Reports progress 0, 50 and 100 of 100.",
      inputSchema: NO_ARGS,
    },
    run: async (_args, extra) => {
      const progressToken = extra._meta?.progressToken;
      for (const progress of [0, 50, 100]) {
        if (progressToken !== undefined) {
          await extra.sendNotification({
            method: "notifications/progress",
            params: { progressToken, progress, total: 100, message: `step ${progress} of 100` },
          });
        }
        // Also after the last one: the SDK client handles a notification a tick after it reads it but
        // a response at once, so a result in the same read would drop the final progress.
        await sleep(50);
      }
      return text("Tool with progress executed successfully");
    },
  },
  {
    definition: {
      name: "test_error_handling",
      description: "Always fails with a tool error.",
      inputSchema: NO_ARGS,
    },
    run: async () => ({
      isError: true,
      content: [{ type: "text", text: "This tool intentionally returns an error for testing" }],
    }),
  },
  {
    definition: {
      name: "test_reconnection",
      description:
        "Closes its SSE stream mid-call (Streamable HTTP) so the client resumes with Last-Event-ID.",
      inputSchema: NO_ARGS,
    },
    run: async (_args, extra) => {
      // Only a Streamable HTTP transport with an event store offers this; over stdio the call just answers.
      extra.closeSSEStream?.();
      await sleep(100);
      return text("Reconnection test completed.");
    },
  },
  {
    definition: {
      name: "test_sampling",
      description: "Asks the client's model to answer a prompt (sampling/createMessage).",
      inputSchema: { type: "object", properties: { prompt: { type: "string" } }, required: ["prompt"] },
    },
    run: async (args, extra) => {
      const result = await extra.sendRequest(
        {
          method: "sampling/createMessage",
          params: {
            messages: [{ role: "user", content: { type: "text", text: String(args.prompt) } }],
            maxTokens: 100,
          },
        },
        CreateMessageResultSchema,
      );
      const answer = result.content.type === "text" ? result.content.text : `[${result.content.type}]`;
      return text(`LLM response: ${answer}`);
    },
  },
  {
    definition: {
      name: "test_elicitation",
      description: "Asks the user for a username and email (elicitation/create).",
      inputSchema: { type: "object", properties: { message: { type: "string" } }, required: ["message"] },
    },
    run: async (args, extra) =>
      elicit(
        extra,
        String(args.message),
        {
          username: { type: "string", description: "User's response" },
          email: { type: "string", description: "User's email address" },
        },
        ["username", "email"],
        "User response",
      ),
  },
  {
    definition: {
      name: "test_elicitation_sep1034_defaults",
      description: "Elicits a form whose fields carry default values (SEP-1034).",
      inputSchema: NO_ARGS,
    },
    run: async (_args, extra) =>
      elicit(
        extra,
        "Please review and update the form fields with defaults",
        {
          name: { type: "string", description: "User name", default: "John Doe" },
          age: { type: "integer", description: "User age", default: 30 },
          score: { type: "number", description: "User score", default: 95.5 },
          status: {
            type: "string",
            description: "User status",
            enum: ["active", "inactive", "pending"],
            default: "active",
          },
          verified: { type: "boolean", description: "Verification status", default: true },
        },
        [],
      ),
  },
  {
    definition: {
      name: "test_elicitation_sep1330_enums",
      description: "Elicits a form with every enum variant (SEP-1330).",
      inputSchema: NO_ARGS,
    },
    run: async (_args, extra) =>
      elicit(
        extra,
        "Please pick from the enum fields",
        {
          untitledSingle: { type: "string", enum: ["option1", "option2", "option3"] },
          titledSingle: {
            type: "string",
            oneOf: [
              { const: "value1", title: "First Option" },
              { const: "value2", title: "Second Option" },
              { const: "value3", title: "Third Option" },
            ],
          },
          legacyEnum: {
            type: "string",
            enum: ["opt1", "opt2", "opt3"],
            enumNames: ["Option One", "Option Two", "Option Three"],
          },
          untitledMulti: {
            type: "array",
            items: { type: "string", enum: ["option1", "option2", "option3"] },
          },
          titledMulti: {
            type: "array",
            items: {
              anyOf: [
                { const: "value1", title: "First Choice" },
                { const: "value2", title: "Second Choice" },
                { const: "value3", title: "Third Choice" },
              ],
            },
          },
        },
        [],
      ),
  },
  {
    definition: {
      name: "json_schema_2020_12_tool",
      description: "Tool with JSON Schema 2020-12 features",
      inputSchema: {
        $schema: "https://json-schema.org/draft/2020-12/schema",
        type: "object",
        $defs: {
          address: { type: "object", properties: { street: { type: "string" }, city: { type: "string" } } },
        },
        properties: { name: { type: "string" }, address: { $ref: "#/$defs/address" } },
        additionalProperties: false,
      },
    },
    run: async (args) => text(`Received: ${JSON.stringify(args)}`),
  },
];

async function elicit(
  extra: Extra,
  message: string,
  properties: ElicitRequestFormParams["requestedSchema"]["properties"],
  required: string[],
  label = "Elicitation completed",
): Promise<CallToolResult> {
  const result = await extra.sendRequest(
    {
      method: "elicitation/create",
      params: { message, requestedSchema: { type: "object", properties, required } },
    },
    ElicitResultSchema,
  );
  return text(`${label}: action=${result.action}, content=${JSON.stringify(result.content ?? {})}`);
}

const LEVELS = LoggingLevelSchema.options;

/** A fresh server; one per session when served over HTTP. */
export function createConformanceServer(): McpServer {
  const server = new McpServer(
    { name: "loom-conformance-fixture", version: "1.0.0" },
    { capabilities: { tools: {}, logging: {}, completions: {}, resources: { subscribe: true } } },
  );
  const byName = new Map(TOOLS.map((tool) => [tool.definition.name, tool]));

  // The SDK keeps the level it is told but does not expose it; the logging tool needs it to filter.
  let minLevel: LoggingLevel = "debug";
  server.server.setRequestHandler(SetLevelRequestSchema, (request) => {
    minLevel = request.params.level;
    return {};
  });

  server.server.setRequestHandler(ListToolsRequestSchema, () => ({
    tools: TOOLS.map((tool) => tool.definition),
  }));
  server.server.setRequestHandler(CallToolRequestSchema, (request, extra) => {
    const tool = byName.get(request.params.name);
    if (!tool) throw new McpError(ErrorCode.InvalidParams, `Tool ${request.params.name} not found`);
    // Log notifications ride on the request's own stream so an HTTP client sees them mid-call.
    const log = async (level: LoggingLevel, data: string) => {
      if (LEVELS.indexOf(level) < LEVELS.indexOf(minLevel)) return;
      await extra.sendNotification({
        method: "notifications/message",
        params: { level, logger: "conformance", data },
      });
    };
    return tool.run(request.params.arguments ?? {}, extra, log);
  });

  // No resource here ever changes, so no resources/updated is ever due: subscribing and
  // unsubscribing are acknowledged and nothing more.
  server.server.setRequestHandler(SubscribeRequestSchema, () => ({}));
  server.server.setRequestHandler(UnsubscribeRequestSchema, () => ({}));

  server.registerResource(
    "static-text",
    "test://static-text",
    { description: "A static text resource.", mimeType: "text/plain" },
    async (uri) => ({
      contents: [
        { uri: uri.href, mimeType: "text/plain", text: "This is the content of the static text resource." },
      ],
    }),
  );
  server.registerResource(
    "static-binary",
    "test://static-binary",
    { description: "A static PNG image.", mimeType: "image/png" },
    async (uri) => ({ contents: [{ uri: uri.href, mimeType: "image/png", blob: PNG_BASE64 }] }),
  );
  server.registerResource(
    "watched-resource",
    "test://watched-resource",
    { description: "A resource clients may subscribe to.", mimeType: "text/plain" },
    async (uri) => ({
      contents: [{ uri: uri.href, mimeType: "text/plain", text: "Watched resource content" }],
    }),
  );
  server.registerResource(
    "template-data",
    new ResourceTemplate("test://template/{id}/data", {
      list: undefined,
      complete: { id: (value) => ["123", "456"].filter((id) => id.startsWith(value)) },
    }),
    { description: "JSON data for an id.", mimeType: "application/json" },
    async (uri, { id }) => ({
      contents: [
        {
          uri: uri.href,
          mimeType: "application/json",
          text: JSON.stringify({ id, templateTest: true, data: `Data for ID: ${id}` }),
        },
      ],
    }),
  );

  server.registerPrompt("test_simple_prompt", { description: "A prompt without arguments." }, () => ({
    messages: [{ role: "user", content: { type: "text", text: "This is a simple prompt for testing." } }],
  }));
  server.registerPrompt(
    "test_prompt_with_arguments",
    {
      description: "A prompt with two arguments.",
      argsSchema: {
        arg1: completable(z.string().describe("First test argument"), (value) =>
          ["paris", "park", "party"].filter((word) => word.startsWith(value)),
        ),
        arg2: z.string().describe("Second test argument"),
      },
    },
    ({ arg1, arg2 }) => ({
      messages: [
        {
          role: "user",
          content: { type: "text", text: `Prompt with arguments: arg1='${arg1}', arg2='${arg2}'` },
        },
      ],
    }),
  );
  server.registerPrompt(
    "test_prompt_with_embedded_resource",
    {
      description: "A prompt that embeds a resource.",
      argsSchema: { resourceUri: z.string().describe("URI of the resource to embed") },
    },
    ({ resourceUri }) => ({
      messages: [
        {
          role: "user",
          content: {
            type: "resource",
            resource: {
              uri: resourceUri,
              mimeType: "text/plain",
              text: "Embedded resource content for testing.",
            },
          },
        },
        { role: "user", content: { type: "text", text: "Please process the embedded resource above." } },
      ],
    }),
  );
  server.registerPrompt("test_prompt_with_image", { description: "A prompt with an image." }, () => ({
    messages: [
      { role: "user", content: { type: "image", data: PNG_BASE64, mimeType: "image/png" } },
      { role: "user", content: { type: "text", text: "Please analyze the image above." } },
    ],
  }));

  return server;
}
