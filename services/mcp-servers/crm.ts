/** Demo MCP server `crm`: contacts with personal data (email, SSN), over stdio. */
import { McpServer, ResourceTemplate } from "@modelcontextprotocol/sdk/server/mcp.js";
import { StdioServerTransport } from "@modelcontextprotocol/sdk/server/stdio.js";
import { z } from "zod";
import { CONTACTS } from "./crm-data.ts";
import { tracedTool, traceServer } from "./telemetry.ts";

const ContactShape = {
  id: z.string(),
  name: z.string(),
  email: z.string(),
  phone: z.string(),
  ssn: z.string(),
  region: z.enum(["eu", "us"]),
};

traceServer("crm");
const server = new McpServer({ name: "loom-demo-crm", version: "1.0.0" });

server.registerTool(
  "get_contact",
  {
    title: "Get contact",
    description: "One contact by id: name, email, phone, SSN and data region.",
    inputSchema: { id: z.string().describe("Contact id, for example c-1") },
    outputSchema: ContactShape,
    annotations: { readOnlyHint: true, openWorldHint: false },
  },
  tracedTool("get_contact", async ({ id }) => {
    const contact = CONTACTS.find((candidate) => candidate.id === id);
    if (contact === undefined) {
      return { isError: true, content: [{ type: "text", text: `no contact with id "${id}"` }] };
    }
    return { content: [{ type: "text", text: JSON.stringify(contact) }], structuredContent: { ...contact } };
  }),
);

server.registerTool(
  "list_contacts",
  {
    title: "List contacts",
    description: "Contacts, optionally only those of one data region.",
    inputSchema: { region: z.enum(["eu", "us"]).optional() },
    outputSchema: { contacts: z.array(z.object(ContactShape)) },
    annotations: { readOnlyHint: true, openWorldHint: false },
  },
  tracedTool("list_contacts", async ({ region }) => {
    const contacts = CONTACTS.filter((contact) => region === undefined || contact.region === region);
    const result = { contacts: contacts.map((contact) => ({ ...contact })) };
    return { content: [{ type: "text", text: JSON.stringify(result) }], structuredContent: result };
  }),
);

/** Contacts deleted in this process; the demo data itself is never changed on disk. */
const deleted = new Set<string>();

server.registerTool(
  "delete_record",
  {
    title: "Delete record",
    description: "Deletes a contact by id. Destructive: the shipped policy allows it to admins only.",
    inputSchema: { id: z.string().describe("Contact id, for example c-1") },
    outputSchema: { id: z.string(), deleted: z.boolean() },
    annotations: { readOnlyHint: false, destructiveHint: true, idempotentHint: true, openWorldHint: false },
  },
  async ({ id }) => {
    if (!CONTACTS.some((contact) => contact.id === id)) {
      return { isError: true, content: [{ type: "text", text: `no contact with id "${id}"` }] };
    }
    const result = { id, deleted: !deleted.has(id) };
    deleted.add(id);
    return { content: [{ type: "text", text: JSON.stringify(result) }], structuredContent: result };
  },
);

server.registerResource(
  "contact",
  new ResourceTemplate("crm://contacts/{id}", {
    list: async () => ({
      resources: CONTACTS.map((contact) => ({ uri: `crm://contacts/${contact.id}`, name: contact.name })),
    }),
  }),
  { title: "Contact", description: "One contact as JSON", mimeType: "application/json" },
  async (uri, { id }) => {
    const contact = CONTACTS.find((candidate) => candidate.id === id);
    if (contact === undefined) throw new Error(`no contact with id "${String(id)}"`);
    return { contents: [{ uri: uri.href, mimeType: "application/json", text: JSON.stringify(contact) }] };
  },
);

server.registerPrompt(
  "summarize",
  {
    title: "Summarize",
    description: "Asks for a summary of a text in at most a number of words.",
    argsSchema: { text: z.string(), length: z.string().default("50") },
  },
  ({ text, length }) => ({
    messages: [
      { role: "user", content: { type: "text", text: `Summarize in at most ${length} words:\n\n${text}` } },
    ],
  }),
);

await server.connect(new StdioServerTransport());
