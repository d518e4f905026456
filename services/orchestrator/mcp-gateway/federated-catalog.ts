import { UriTemplate } from "@modelcontextprotocol/sdk/shared/uriTemplate.js";
import type { Prompt, Resource, ResourceTemplate, Tool } from "@modelcontextprotocol/sdk/types.js";
import type { KV } from "@nats-io/kv";
import { type ToolDescriptor, ToolDescriptorSchema } from "../../../schemas/mcp.ts";
import { type McpCatalogEntry, McpCatalogEntrySchema } from "../../../schemas/mcp-catalog.ts";
import type { Logger } from "../../kit/index.ts";
import { KvMirror } from "../../kit/kv-mirror.ts";

/** The lists a client can be told changed. */
export type CatalogList = "tools" | "resources" | "prompts";

/** One upstream primitive as the gateway exposes it: its public name and where it lives. */
export interface Exposed<T> {
  /** The name clients see: `<server>.<name>`, or the server's configured prefix and the name. */
  name: string;
  server: string;
  /** The name (or URI, for resources) on its own server. */
  upstream: string;
  item: T;
}

/**
 * Everything every worker registered: tools from KV `loom_tools`, resources, templates and prompts
 * from KV `loom_catalog`, under the names the gateway exposes them by.
 */
export class FederatedCatalog {
  readonly #tools: KvMirror<typeof ToolDescriptorSchema>;
  readonly #catalogs: KvMirror<typeof McpCatalogEntrySchema>;

  private constructor(
    tools: KvMirror<typeof ToolDescriptorSchema>,
    catalogs: KvMirror<typeof McpCatalogEntrySchema>,
  ) {
    this.#tools = tools;
    this.#catalogs = catalogs;
  }

  static async open(buckets: { tools: KV; catalog: KV }, log: Logger): Promise<FederatedCatalog> {
    const tools = await KvMirror.open(buckets.tools, ToolDescriptorSchema, "tool descriptor", log);
    try {
      return new FederatedCatalog(
        tools,
        await KvMirror.open(buckets.catalog, McpCatalogEntrySchema, "MCP catalog entry", log),
      );
    } catch (error) {
      tools.close();
      throw error;
    }
  }

  tools(): Exposed<Tool>[] {
    return [...this.#tools.values()].map((descriptor) => ({
      name: this.#expose(descriptor.server, descriptor.name),
      server: descriptor.server,
      upstream: descriptor.name,
      item: toolOf(descriptor, this.#expose(descriptor.server, descriptor.name)),
    }));
  }

  resources(): Exposed<Resource>[] {
    return this.#entries().flatMap((entry) =>
      entry.resources.map((resource) => ({
        name: this.#expose(entry.server, resource.name),
        server: entry.server,
        upstream: resource.uri,
        item: { ...resource, name: this.#expose(entry.server, resource.name) },
      })),
    );
  }

  resourceTemplates(): Exposed<ResourceTemplate>[] {
    return this.#entries().flatMap((entry) =>
      entry.resourceTemplates.map((template) => ({
        name: this.#expose(entry.server, template.name),
        server: entry.server,
        upstream: template.uriTemplate,
        item: { ...template, name: this.#expose(entry.server, template.name) },
      })),
    );
  }

  prompts(): Exposed<Prompt>[] {
    return this.#entries().flatMap((entry) =>
      entry.prompts.map((prompt) => ({
        name: this.#expose(entry.server, prompt.name),
        server: entry.server,
        upstream: prompt.name,
        item: { ...prompt, name: this.#expose(entry.server, prompt.name) },
      })),
    );
  }

  /**
   * Calls `listener` with each list a change in the registries altered (`tools`, `resources`,
   * templates counted as resources, `prompts`), for `notifications/<kind>/list_changed`. Returns
   * how to stop.
   */
  onListChanged(listener: (kind: CatalogList) => void): () => void {
    const stopTools = this.#tools.onChange(() => listener("tools"));
    const stopCatalogs = this.#catalogs.onChange((_server, before, after) => {
      // What a client sees of a list: its items under their exposed names (the prefix matters only then).
      const seen = (items: unknown[], entry: McpCatalogEntry | undefined) =>
        JSON.stringify(items.length === 0 ? [] : [items, entry?.gateway?.prefix]);
      const resources = (entry: McpCatalogEntry | undefined) =>
        seen([...(entry?.resources ?? []), ...(entry?.resourceTemplates ?? [])], entry);
      const prompts = (entry: McpCatalogEntry | undefined) => seen(entry?.prompts ?? [], entry);
      if (resources(before) !== resources(after)) listener("resources");
      if (prompts(before) !== prompts(after)) listener("prompts");
    });
    return () => {
      stopTools();
      stopCatalogs();
    };
  }

  findTool(name: string): Exposed<Tool> | undefined {
    return this.tools().find((tool) => tool.name === name);
  }

  findPrompt(name: string): Exposed<Prompt> | undefined {
    return this.prompts().find((prompt) => prompt.name === name);
  }

  /**
   * The server a resource URI belongs to: the one that listed it, else the one with a template
   * it matches, else the server named by the URI's scheme (`crm://contacts/c-1` is crm's).
   */
  serverOfUri(uri: string): string | undefined {
    const listed = this.resources().find((resource) => resource.upstream === uri);
    if (listed !== undefined) return listed.server;
    const templated = this.resourceTemplates().find((template) => matches(template.upstream, uri));
    if (templated !== undefined) return templated.server;
    const scheme = /^([a-z0-9][a-z0-9_-]*):\/\//i.exec(uri)?.[1];
    return scheme !== undefined && this.#catalogs.get(scheme) !== undefined ? scheme : undefined;
  }

  /** The server whose resource template this is (completions refer to templates by their text). */
  serverOfTemplate(uriTemplate: string): string | undefined {
    return this.resourceTemplates().find((template) => template.upstream === uriTemplate)?.server;
  }

  close(): void {
    this.#tools.close();
    this.#catalogs.close();
  }

  #entries(): McpCatalogEntry[] {
    return [...this.#catalogs.values()];
  }

  #expose(server: string, name: string): string {
    const prefix = this.#catalogs.get(server)?.gateway?.prefix ?? `${server}.`;
    return `${prefix}${name}`;
  }
}

function toolOf(descriptor: ToolDescriptor, name: string): Tool {
  return {
    name,
    ...(descriptor.title === undefined ? {} : { title: descriptor.title }),
    ...(descriptor.description === undefined ? {} : { description: descriptor.description }),
    inputSchema: { type: "object", ...descriptor.inputSchema },
    ...(descriptor.outputSchema === undefined
      ? {}
      : { outputSchema: { type: "object", ...descriptor.outputSchema } }),
    ...(descriptor.annotations === undefined ? {} : { annotations: descriptor.annotations }),
  };
}

function matches(uriTemplate: string, uri: string): boolean {
  try {
    return new UriTemplate(uriTemplate).match(uri) !== null;
  } catch {
    return false;
  }
}
