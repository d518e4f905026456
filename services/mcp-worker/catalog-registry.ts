import type { Client } from "@modelcontextprotocol/sdk/client/index.js";
import type { KV } from "@nats-io/kv";
import type { McpServerConfig } from "../../schemas/mcp.ts";
import {
  type CatalogPrompt,
  type CatalogResource,
  type CatalogResourceTemplate,
  type McpCatalogEntry,
  McpCatalogEntrySchema,
} from "../../schemas/mcp-catalog.ts";
import { encodePayload } from "../kit/index.ts";
import type { McpConnection } from "./mcp-connection.ts";

/** Pages read from one list before giving up on a server that keeps handing out cursors. */
const MAX_PAGES = 100;

/**
 * Lists a server's resources, resource templates and prompts (every page, only what its
 * capabilities announce) and records them in KV `loom_catalog` under the server's name, beside its
 * tools in `loom_tools`.
 */
export async function recordCatalog(
  kv: KV,
  connection: Pick<McpConnection, "config" | "withClient">,
): Promise<McpCatalogEntry> {
  const { config } = connection;
  const listed = await connection.withClient("catalog", config.timeout, (client) => listCatalog(client));
  const entry = catalogEntry(config, listed);
  await kv.put(config.name, encodePayload(McpCatalogEntrySchema, entry, "MCP catalog entry"));
  return entry;
}

interface Listed {
  resources: CatalogResource[];
  resourceTemplates: CatalogResourceTemplate[];
  prompts: CatalogPrompt[];
}

async function listCatalog(client: Client): Promise<Listed> {
  const capabilities = client.getServerCapabilities() ?? {};
  const resources =
    capabilities.resources === undefined
      ? []
      : await allPages(async (cursor) => {
          const page = await client.listResources(cursor === undefined ? {} : { cursor });
          return { items: page.resources, nextCursor: page.nextCursor };
        });
  const resourceTemplates =
    capabilities.resources === undefined
      ? []
      : await allPages(async (cursor) => {
          const page = await client.listResourceTemplates(cursor === undefined ? {} : { cursor });
          return { items: page.resourceTemplates, nextCursor: page.nextCursor };
        });
  const prompts =
    capabilities.prompts === undefined
      ? []
      : await allPages(async (cursor) => {
          const page = await client.listPrompts(cursor === undefined ? {} : { cursor });
          return { items: page.prompts, nextCursor: page.nextCursor };
        });
  return { resources, resourceTemplates, prompts };
}

async function allPages<T>(
  page: (cursor: string | undefined) => Promise<{ items: T[]; nextCursor?: string | undefined }>,
): Promise<T[]> {
  const items: T[] = [];
  let cursor: string | undefined;
  for (let pages = 0; pages < MAX_PAGES; pages++) {
    const next = await page(cursor);
    items.push(...next.items);
    cursor = next.nextCursor;
    if (cursor === undefined || cursor === "") break;
  }
  return items;
}

function catalogEntry(config: McpServerConfig, listed: Listed): McpCatalogEntry {
  return {
    server: config.name,
    governance: config.governance,
    ...(config.gateway === undefined ? {} : { gateway: config.gateway }),
    ...listed,
    updatedAt: new Date().toISOString(),
  };
}
