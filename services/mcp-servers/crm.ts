/** Demo MCP server `crm`: contacts with personal data (email, SSN), over stdio. */
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { StdioServerTransport } from "@modelcontextprotocol/sdk/server/stdio.js";
import { z } from "zod";
import { CONTACTS } from "./crm-data.ts";

const ContactShape = {
  id: z.string(),
  name: z.string(),
  email: z.string(),
  phone: z.string(),
  ssn: z.string(),
  region: z.enum(["eu", "us"]),
};

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
  async ({ id }) => {
    const contact = CONTACTS.find((candidate) => candidate.id === id);
    if (contact === undefined) {
      return { isError: true, content: [{ type: "text", text: `no contact with id "${id}"` }] };
    }
    return { content: [{ type: "text", text: JSON.stringify(contact) }], structuredContent: { ...contact } };
  },
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
  async ({ region }) => {
    const contacts = CONTACTS.filter((contact) => region === undefined || contact.region === region);
    const result = { contacts: contacts.map((contact) => ({ ...contact })) };
    return { content: [{ type: "text", text: JSON.stringify(result) }], structuredContent: result };
  },
);

await server.connect(new StdioServerTransport());
