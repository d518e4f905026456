import { randomUUID } from "node:crypto";
import type { KV } from "@nats-io/kv";
import { ErrorCode } from "../../../schemas/errors.ts";
import { type McpLogLevel, type McpSession, McpSessionSchema } from "../../../schemas/mcp-session.ts";
import { CasContendedError, casUpdate, encodePayload, LoomError, parsePayload } from "../../kit/index.ts";

/** A session seen within this long is not written again just to say so (the bucket TTL is far longer). */
const TOUCH_EVERY_MS = 60_000;
/** Links a session remembers (the latest); older ones are read only if a server lists them. */
const MAX_LINKS = 256;
/** Resources one session may be subscribed to at once. */
export const MAX_SUBSCRIPTIONS = 256;
/** Tries to change a record that other requests of the session write at the same time. */
const UPDATE_ATTEMPTS = 10;
/** Most a retry waits, at random, so writers that collided do not collide again in step. */
const RETRY_JITTER_MS = 20;

/**
 * Gateway sessions in KV `loom_mcp_sessions`. Nothing about a session lives in a replica's memory,
 * so a restarted or different replica serves it; the bucket's TTL forgets idle ones, and each use
 * rewrites the record now and then to keep it alive. Requests of one session may run at once, on
 * any replica: every change is made to the record as KV holds it, compare-and-set, so none is lost.
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
    await this.#update(session.id, (current) => current);
  }

  async setLogLevel(session: McpSession, logLevel: McpLogLevel): Promise<void> {
    await this.#update(session.id, (current) => ({ ...current, logLevel }));
  }

  /**
   * Adds `links` (resource URI to the server whose tool returned it) to the session, so a read of
   * one goes to that server.
   */
  async rememberLinks(id: string, links: Record<string, string>): Promise<void> {
    await this.#update(id, (current) => ({
      ...current,
      links: Object.fromEntries(Object.entries({ ...current.links, ...links }).slice(-MAX_LINKS)),
    }));
  }

  /**
   * Notes that the session is subscribed to `uri` of `server` (its updates then reach the session's
   * GET stream). Refused past MAX_SUBSCRIPTIONS, so a client cannot grow its record without bound.
   */
  async subscribe(id: string, uri: string, server: string): Promise<void> {
    await this.#update(id, (current) => {
      const subscriptions = { ...current.subscriptions, [uri]: server };
      if (Object.keys(subscriptions).length > MAX_SUBSCRIPTIONS) {
        throw new LoomError(
          ErrorCode.LIMIT_EXCEEDED,
          `an MCP session may subscribe to at most ${MAX_SUBSCRIPTIONS} resources; unsubscribe from some first`,
          { details: { limit: "subscriptions", max: MAX_SUBSCRIPTIONS } },
        );
      }
      return { ...current, subscriptions };
    });
  }

  /** Ends the session's subscription to `uri`; the server it was with, or undefined when there was none. */
  async unsubscribe(id: string, uri: string): Promise<string | undefined> {
    let server: string | undefined;
    await this.#update(id, (current) => {
      server = current.subscriptions?.[uri];
      const { [uri]: _ended, ...rest } = current.subscriptions ?? {};
      return { ...current, subscriptions: rest };
    });
    return server;
  }

  async delete(id: string): Promise<void> {
    await this.#kv.delete(id);
  }

  /** Writes `change` of the record KV holds now, marked as seen; a session that ended stays ended. */
  async #update(id: string, change: (current: McpSession) => McpSession): Promise<void> {
    try {
      await casUpdate(
        this.#kv,
        id,
        (entry) => {
          if (entry === null) return undefined;
          const current = parsePayload(McpSessionSchema, entry.value, `MCP session ${id}`);
          const changed = { ...change(current), lastSeenAt: new Date().toISOString() };
          return encodePayload(McpSessionSchema, changed, "MCP session");
        },
        { attempts: UPDATE_ATTEMPTS, jitterMs: RETRY_JITTER_MS },
      );
    } catch (error) {
      if (!(error instanceof CasContendedError)) throw error;
      throw new LoomError(
        ErrorCode.INTERNAL,
        `MCP session ${id} kept changing while this request wrote it; try again`,
        { cause: error },
      );
    }
  }
}
