import type { KV } from "@nats-io/kv";
import type { z } from "zod";
import { ErrorCode } from "../../schemas/errors.ts";
import { type ToolDescriptor, ToolDescriptorSchema } from "../../schemas/mcp.ts";
import { type McpCatalogEntry, McpCatalogEntrySchema } from "../../schemas/mcp-catalog.ts";
import { type Logger, LoomError, parsePayload, readEntry } from "../kit/index.ts";
import { KvMirror } from "../kit/kv-mirror.ts";

/** Keys are `<server>.<tool>` or `<server>` with KV-safe names; anything else cannot be registered. */
const REGISTRY_KEY = /^[A-Za-z0-9_.-]+$/;

/**
 * What the workers registered, as acp-policy decides on it: tool descriptors (KV `loom_tools`) and
 * each server's catalog entry (KV `loom_catalog`), read from in-memory copies a KV watch keeps
 * current, not with a KV read per decision. A key the copy lacks is read from the bucket itself,
 * so a tool registered a moment ago is never refused, and never allowed, on the copy's word alone.
 */
export class RegistryView {
  readonly #tools: KvMirror<typeof ToolDescriptorSchema>;
  readonly #toolsKv: KV;
  readonly #catalog: KvMirror<typeof McpCatalogEntrySchema>;
  readonly #catalogKv: KV;

  private constructor(
    tools: { mirror: KvMirror<typeof ToolDescriptorSchema>; kv: KV },
    catalog: { mirror: KvMirror<typeof McpCatalogEntrySchema>; kv: KV },
  ) {
    this.#tools = tools.mirror;
    this.#toolsKv = tools.kv;
    this.#catalog = catalog.mirror;
    this.#catalogKv = catalog.kv;
  }

  /** Opens both copies once the buckets' present values are in. */
  static async open(buckets: { tools: KV; catalog: KV }, log: Logger): Promise<RegistryView> {
    const [tools, catalog] = await Promise.all([
      KvMirror.open(buckets.tools, ToolDescriptorSchema, "tool descriptor", log),
      KvMirror.open(buckets.catalog, McpCatalogEntrySchema, "MCP catalog entry", log),
    ]);
    return new RegistryView({ mirror: tools, kv: buckets.tools }, { mirror: catalog, kv: buckets.catalog });
  }

  /** The descriptor of `<server>.<tool>`, or undefined when no worker registered it. */
  async tool(qualified: string): Promise<ToolDescriptor | undefined> {
    return this.#tools.get(qualified) ?? this.#read(this.#toolsKv, qualified, ToolDescriptorSchema);
  }

  /** A server's catalog entry (its governance among it), or undefined when no worker registered it. */
  async server(name: string): Promise<McpCatalogEntry | undefined> {
    return this.#catalog.get(name) ?? this.#read(this.#catalogKv, name, McpCatalogEntrySchema);
  }

  /**
   * Why `<server>.<tool>` has no descriptor: its server is unknown to every worker
   * (UNKNOWN_SERVER), or the server is known and offers no such tool (UNKNOWN_TOOL).
   */
  async unregistered(qualified: string): Promise<LoomError> {
    const [server = qualified] = qualified.split(".");
    if (this.#tools.under(server).length > 0 || (await this.#serverHasTools(server))) {
      return new LoomError(
        ErrorCode.UNKNOWN_TOOL,
        `MCP server "${server}" offers no tool "${qualified.slice(server.length + 1)}" (see \`loom tools list\`)`,
        { details: { server, tool: qualified } },
      );
    }
    return new LoomError(
      ErrorCode.UNKNOWN_SERVER,
      `no MCP server "${server}" is registered by any worker (see \`loom servers list\`; servers come from LOOM_MCP_SERVERS)`,
      { details: { server } },
    );
  }

  close(): void {
    this.#tools.close();
    this.#catalog.close();
  }

  async #serverHasTools(server: string): Promise<boolean> {
    if (!/^[A-Za-z0-9_-]+$/.test(server)) return false;
    for await (const _ of await this.#toolsKv.keys(`${server}.>`)) return true;
    return false;
  }

  async #read<T>(kv: KV, key: string, schema: z.ZodType<T>): Promise<T | undefined> {
    if (!REGISTRY_KEY.test(key)) return undefined;
    const entry = await readEntry(kv, key);
    return entry === null ? undefined : parsePayload(schema, entry.value, `${entry.bucket} entry ${key}`);
  }
}
