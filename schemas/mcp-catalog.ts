import { z } from "zod";
import { GovernanceSchema } from "./mcp.ts";
import { GatewayExposureSchema } from "./mcp-gateway-exposure.ts";

/**
 * A resource, resource template or prompt as its MCP server listed it. Only the fields Loom reads
 * are named; the others (annotations, icons, sizes, `_meta`) are kept as they came, so the MCP
 * gateway relays them faithfully.
 */
export const CatalogResourceSchema = z.looseObject({
  uri: z.string().min(1),
  name: z.string(),
  mimeType: z.string().optional(),
});
export type CatalogResource = z.infer<typeof CatalogResourceSchema>;

export const CatalogResourceTemplateSchema = z.looseObject({
  uriTemplate: z.string().min(1),
  name: z.string(),
});
export type CatalogResourceTemplate = z.infer<typeof CatalogResourceTemplateSchema>;

export const CatalogPromptSchema = z.looseObject({
  name: z.string().min(1),
  arguments: z.array(z.looseObject({ name: z.string(), required: z.boolean().optional() })).optional(),
});
export type CatalogPrompt = z.infer<typeof CatalogPromptSchema>;

/** One MCP server's resources, templates and prompts, in KV `loom_catalog` under the server's name. */
export const McpCatalogEntrySchema = z.object({
  server: z.string().min(1),
  governance: GovernanceSchema,
  gateway: GatewayExposureSchema.optional(),
  resources: z.array(CatalogResourceSchema),
  resourceTemplates: z.array(CatalogResourceTemplateSchema),
  prompts: z.array(CatalogPromptSchema),
  updatedAt: z.iso.datetime(),
});
export type McpCatalogEntry = z.infer<typeof McpCatalogEntrySchema>;
