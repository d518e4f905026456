import type { Server } from "@modelcontextprotocol/sdk/server/index.js";
import type { Subscription } from "@nats-io/transport-node";
import type { Request, Response } from "express";
import { decodeJwt } from "jose";
import { type ResourceUpdated, ResourceUpdatedSchema } from "../../../schemas/mcp.ts";
import { RESOURCE_UPDATES_ALL } from "../../../schemas/subjects.ts";
import { listen } from "../../kit/index.ts";
import type { CatalogList } from "./federated-catalog.ts";
import type { CallerContext, GatewayDependencies } from "./gateway-server.ts";
import { serverSide } from "./server-side.ts";

/** Longest a stream stays open when its token names no expiry (acp-policy accepted it without one). */
const MAX_STREAM_MS = 3_600_000;

/** Time left on a bearer token acp-policy accepted (its `exp`), capped at MAX_STREAM_MS. */
function msUntilExpiry(authorization: string): number {
  const { exp } = decodeJwt(authorization.replace(/^Bearer\s+/i, ""));
  return exp === undefined ? MAX_STREAM_MS : Math.min(Math.max(0, exp * 1000 - Date.now()), MAX_STREAM_MS);
}

/** A burst of registry writes (a server's tools re-registered one key at a time) is told once. */
const LIST_CHANGED_SETTLE_MS = 200;

/** One open `GET /mcp` stream: the session it serves and the server that writes to it. */
interface OpenStream {
  sessionId: string;
  server: Server;
}

/**
 * The server-initiated SSE streams (`GET /mcp`) this replica holds open. What they carry comes to
 * every replica: resource updates over NATS from the worker holding the upstream subscription
 * (sent to each stream whose session, as KV holds it now, is subscribed to that URI), list changes
 * from the registries every replica mirrors. A session may open its stream on any replica.
 */
export class SessionStreams {
  readonly #deps: GatewayDependencies;
  readonly #open = new Set<OpenStream>();
  readonly #settling = new Map<CatalogList, NodeJS.Timeout>();
  readonly #updates: Subscription;
  readonly #stopListChanged: () => void;

  constructor(deps: GatewayDependencies) {
    this.#deps = deps;
    this.#updates = listen(deps.dispatch.nc, {
      subject: RESOURCE_UPDATES_ALL,
      schema: ResourceUpdatedSchema,
      what: "resource update",
      log: deps.dispatch.log,
      handle: (update) => this.#resourceUpdated(update),
    });
    this.#stopListChanged = deps.catalog.onListChanged((list) => this.#listChanged(list));
  }

  /** Serves one GET stream of an authenticated caller's session until the client goes away. */
  async serve(caller: CallerContext, req: Request, res: Response): Promise<void> {
    const { StreamableHTTPServerTransport, createGatewayServer } = await serverSide();
    const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined });
    const server = createGatewayServer(this.#deps, caller);
    const stream: OpenStream = { sessionId: caller.session.id, server };
    // A stream lasts no longer than the token that opened it: the client reconnects with a new one.
    const expiry = setTimeout(() => void transport.close(), msUntilExpiry(caller.authorization));
    expiry.unref();
    res.on("close", () => {
      clearTimeout(expiry);
      this.#open.delete(stream);
      void transport.close();
      void server.close();
    });
    await server.connect(transport);
    this.#open.add(stream);
    await transport.handleRequest(req, res);
  }

  close(): void {
    this.#updates.unsubscribe();
    this.#stopListChanged();
    for (const timer of this.#settling.values()) clearTimeout(timer);
    for (const stream of this.#open) void stream.server.close();
    this.#open.clear();
  }

  async #resourceUpdated(update: ResourceUpdated): Promise<void> {
    await Promise.all(
      [...this.#open].map(async (stream) => {
        const session = await this.#deps.sessions.get(stream.sessionId);
        if (session?.subscriptions?.[update.uri] !== update.server) return;
        await stream.server
          .sendResourceUpdated({ uri: update.uri })
          .catch((error: unknown) =>
            this.#deps.dispatch.log.debug(
              { err: error, mcp_session: stream.sessionId },
              "resource update not sent: the stream closed",
            ),
          );
      }),
    );
  }

  #listChanged(list: CatalogList): void {
    if (this.#settling.has(list)) return;
    const timer = setTimeout(() => {
      this.#settling.delete(list);
      for (const stream of this.#open) {
        const sent =
          list === "tools"
            ? stream.server.sendToolListChanged()
            : list === "resources"
              ? stream.server.sendResourceListChanged()
              : stream.server.sendPromptListChanged();
        sent.catch((error: unknown) =>
          this.#deps.dispatch.log.debug(
            { err: error, mcp_session: stream.sessionId },
            "list change not sent: the stream closed",
          ),
        );
      }
    }, LIST_CHANGED_SETTLE_MS);
    timer.unref();
    this.#settling.set(list, timer);
  }
}
