import { randomUUID } from "node:crypto";
import type { KV } from "@nats-io/kv";
import { type McpSession, McpSessionSchema } from "../../../schemas/mcp-session.ts";
import { encodePayload, parsePayload } from "../../kit/index.ts";

/** A session seen within this long is not written again just to say so (the bucket TTL is far longer). */
const TOUCH_EVERY_MS = 60_000;

/**
 * Gateway sessions in KV `loom_mcp_sessions`. Nothing about a session lives in a replica's memory,
 * so a restarted or different replica serves it; the bucket's TTL forgets idle ones, and each use
 * rewrites the record now and then to keep it alive.
 */
export class SessionStore {
  readonly #kv: KV;

  constructor(kv: KV) {
    this.#kv = kv;
  }

  async create(
    fields: Pick<McpSession, "principal" | "protocolVersion" | "clientCapabilities" | "clientInfo">,
  ): Promise<McpSession> {
    const now = new Date().toISOString();
    const session: McpSession = {
      id: randomUUID(),
      ...fields,
      createdAt: now,
      lastSeenAt: now,
    };
    await this.#kv.create(session.id, encodePayload(McpSessionSchema, session, "MCP session"));
    return session;
  }

  /** The session, or undefined when it never existed, ended or expired. */
  async get(id: string): Promise<McpSession | undefined> {
    // Ids are UUIDs; anything else cannot name a session (nor be a KV key).
    if (!/^[0-9a-f-]{36}$/i.test(id)) return undefined;
    const entry = await this.#kv.get(id);
    if (entry === null || entry.operation !== "PUT") return undefined;
    return parsePayload(McpSessionSchema, entry.value, `MCP session ${id}`);
  }

  /** Records that the session is in use, at most once a minute. */
  async touch(session: McpSession): Promise<void> {
    if (Date.now() - Date.parse(session.lastSeenAt) < TOUCH_EVERY_MS) return;
    const touched = { ...session, lastSeenAt: new Date().toISOString() };
    await this.#kv.put(session.id, encodePayload(McpSessionSchema, touched, "MCP session"));
  }

  async delete(id: string): Promise<void> {
    await this.#kv.delete(id);
  }
}
