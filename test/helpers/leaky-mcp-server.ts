/**
 * An MCP server over stdio that puts the crm demo's personal data on every path an MCP server has
 * to its client: error results, thrown errors, progress and log notifications, elicitation and
 * sampling requests, resource reads, prompts and completions. The masking attacks call it as a
 * masked caller and look for the data wherever it could come out.
 */

import { completable } from "@modelcontextprotocol/sdk/server/completable.js";
import { McpServer, ResourceTemplate } from "@modelcontextprotocol/sdk/server/mcp.js";
import { StdioServerTransport } from "@modelcontextprotocol/sdk/server/stdio.js";
import { McpError, ErrorCode as McpErrorCode } from "@modelcontextprotocol/sdk/types.js";
import { z } from "zod";
import { CONTACTS } from "../../services/mcp-servers/crm-data.ts";

const [ada, grace] = CONTACTS as [(typeof CONTACTS)[number], (typeof CONTACTS)[number]];
const text = (value: string) => ({ content: [{ type: "text" as const, text: value }] });

const server = new McpServer(
  { name: "loom-leaky", version: "1.0.0" },
  { capabilities: { logging: {}, completions: {} } },
);

server.registerTool(
  "leak_error",
  { description: "An error result whose text holds a contact as JSON and in prose." },
  async () => ({
    isError: true,
    content: [
      { type: "text", text: `lookup failed for ${JSON.stringify({ email: ada.email, ssn: ada.ssn })}` },
      { type: "text", text: `also tried ${grace.email} with SSN ${grace.ssn}` },
    ],
  }),
);

server.registerTool("leak_throw", { description: "Throws an MCP error naming a contact." }, async () => {
  throw new McpError(McpErrorCode.InternalError, `backend refused ${ada.email} (SSN ${ada.ssn})`);
});

server.registerTool(
  "leak_progress",
  { description: "Logs a contact and reports progress naming one, then answers without personal data." },
  async (extra) => {
    await server.sendLoggingMessage({
      level: "info",
      logger: "leaky",
      // Prose, not fields named email or ssn: the services' loggers redact such fields anyway.
      data: `checking ${ada.email} (SSN ${ada.ssn})`,
    });
    const progressToken = extra._meta?.progressToken;
    if (progressToken !== undefined) {
      await extra.sendNotification({
        method: "notifications/progress",
        params: { progressToken, progress: 1, total: 2, message: `checking ${grace.email} / ${grace.ssn}` },
      });
    }
    return text("progress done");
  },
);

server.registerTool(
  "leak_elicit",
  { description: "Asks its user to confirm a contact's email and SSN." },
  async () => {
    const answer = await server.server.elicitInput({
      message: `Is ${ada.email} (SSN ${ada.ssn}) still right?`,
      requestedSchema: {
        type: "object",
        properties: {
          email: { type: "string", default: ada.email },
          note: { type: "string", description: `about ${grace.email}` },
        },
      },
    });
    return text(`elicitation answered ${answer.action}`);
  },
);

server.registerTool(
  "leak_sample",
  {
    description:
      "Asks for a completion about a contact and answers with what the model said, base64-encoded, so the result's own masking cannot hide what the model was sent.",
  },
  async () => {
    const answer = await server.server.createMessage({
      systemPrompt: `You know ${grace.email}`,
      messages: [{ role: "user", content: { type: "text", text: `Summarise ${ada.email}, SSN ${ada.ssn}` } }],
      maxTokens: 100,
    });
    const said = answer.content.type === "text" ? answer.content.text : "";
    return text(`model heard (base64): ${Buffer.from(said).toString("base64")}`);
  },
);

server.registerTool(
  "contact",
  {
    description: "One contact by id (the worker may cache it).",
    inputSchema: { id: z.string() },
  },
  async ({ id }) => {
    const contact = CONTACTS.find((candidate) => candidate.id === id);
    if (contact === undefined) return { isError: true, ...text(`no contact ${id}`) };
    return { ...text(JSON.stringify(contact)), structuredContent: { ...contact } };
  },
);

server.registerResource(
  "broken",
  new ResourceTemplate("leaky://broken/{id}", { list: undefined }),
  { description: "A read that fails naming the contact.", mimeType: "application/json" },
  async (_uri, { id }) => {
    const contact = CONTACTS.find((candidate) => candidate.id === id) ?? ada;
    throw new McpError(McpErrorCode.InternalError, `record of ${contact.email} (${contact.ssn}) is locked`);
  },
);

server.registerPrompt(
  "leak_prompt",
  {
    description: "A prompt about a contact, whose argument completes to contacts' emails.",
    argsSchema: { who: completable(z.string(), () => CONTACTS.map((contact) => contact.email)) },
  },
  ({ who }) => ({
    messages: [
      {
        role: "user",
        content: { type: "text", text: `Write to ${ada.email} (SSN ${ada.ssn}) about ${who}` },
      },
    ],
  }),
);

await server.connect(new StdioServerTransport());
