import {
  type InitializeRequest,
  isInitializeRequest,
  LATEST_PROTOCOL_VERSION,
  SUPPORTED_PROTOCOL_VERSIONS,
} from "@modelcontextprotocol/sdk/types.js";
import express, { type Request, type Response } from "express";
import type { McpSession } from "../../../schemas/mcp-session.ts";
import type { Logger } from "../../kit/index.ts";
import { httpErrorHandler, jsonRpcFailure } from "../http-body-errors.ts";
import { type Authenticated, bearerAuth, jsonRpcError } from "./bearer-auth.ts";
import { AnsweringTransport, clientResponsesOf, routeClientResponses } from "./client-responses.ts";
import { devAuthorizationServer } from "./dev-authorization-server.ts";
import type { GatewayDependencies } from "./gateway-server.ts";
import { dispatchOperation, subscription } from "./operation-dispatch.ts";
import { MCP_PATH, RESOURCE_METADATA_PATH, resourceMetadataHandler } from "./resource-metadata.ts";
import { serverSide } from "./server-side.ts";
import type { SessionStreams } from "./session-streams.ts";

const SESSION_HEADER = "mcp-session-id";
/** Largest JSON-RPC body taken; policy refuses tool arguments over 64 KiB anyway. */
const MAX_BODY = "4mb";

export interface McpEndpointOptions extends GatewayDependencies {
  /** The sessions' `GET /mcp` streams this replica serves. */
  streams: SessionStreams;
  publicUrl: string | undefined;
  /** The issuer URL of the identity provider; undefined: the development authorization server here. */
  authorizationServer: string | undefined;
  /** How long acp-policy may take to answer the development token endpoint. */
  policyTimeoutMs: number;
  log: Logger;
}

/**
 * The MCP gateway on the orchestrator's HTTP edge: Streamable HTTP at `/mcp` and the protected
 * resource metadata beside it. Order of checks: bearer token (401), session (404); the Origin the
 * MCP specification asks a Streamable HTTP server to check (DNS rebinding) is checked, with the
 * Host, for every route of the edge before any sees the request (`listenHttpEdge`).
 * Sessions live in KV, and each request gets a fresh stateless transport and server, so a request
 * may land on any replica, before or after a restart.
 */
export function mcpGatewayRouter(options: McpEndpointOptions): express.Router {
  const router = express.Router();
  const metadata = resourceMetadataHandler(options);
  router.get(`${RESOURCE_METADATA_PATH}${MCP_PATH}`, metadata);
  router.get(RESOURCE_METADATA_PATH, metadata);
  if (options.authorizationServer === undefined) {
    router.use(
      devAuthorizationServer({
        nc: options.dispatch.nc,
        timeoutMs: options.policyTimeoutMs,
        publicUrl: options.publicUrl,
        log: options.log,
      }),
    );
  }
  router.use(MCP_PATH, bearerAuth(options), express.json({ limit: MAX_BODY }));
  router.post(MCP_PATH, (req, res) => void serve(options, req, res));
  router.delete(MCP_PATH, (req, res) => void end(options, req, res));
  // The session's server-initiated stream: resource updates and list changes.
  router.get(MCP_PATH, (req, res) => void stream(options, req, res));
  // A body that is not JSON (or too large) is a JSON-RPC error, not express's HTML page.
  router.use(MCP_PATH, httpErrorHandler(options.log, jsonRpcFailure));
  return router;
}

async function serve(options: McpEndpointOptions, req: Request, res: Response): Promise<void> {
  const caller = res.locals.caller as Authenticated;
  try {
    const initialize = initializeRequestOf(req.body);
    let session: McpSession | undefined;
    if (initialize !== undefined) {
      const requested = initialize.params.protocolVersion;
      session = await options.sessions.create({
        principal: caller.principal.id,
        protocolVersion: SUPPORTED_PROTOCOL_VERSIONS.includes(requested)
          ? requested
          : LATEST_PROTOCOL_VERSION,
        clientCapabilities: initialize.params.capabilities,
        clientInfo: initialize.params.clientInfo,
      });
      // The transport is stateless (the session is ours, in KV): the header is set here.
      res.setHeader("Mcp-Session-Id", session.id);
      options.log.info(
        {
          mcp_session: session.id,
          principal: caller.principal.id,
          client: initialize.params.clientInfo.name,
        },
        "MCP gateway session opened",
      );
    } else {
      session = await sessionOf(options, req, res, caller);
      if (session === undefined) return;
      // The client answering what a server asked it during a call (sampling, elicitation): the
      // answer goes to the replica whose call waits for it.
      const responses = clientResponsesOf(req.body);
      if (responses !== undefined) {
        routeClientResponses(options.dispatch.nc, session.id, responses);
        res.status(202).end();
        return;
      }
    }
    const { StreamableHTTPServerTransport, createGatewayServer } = await serverSide();
    const inner = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined });
    const transport = new AnsweringTransport(inner, options.dispatch.nc, session.id, options.log);
    const server = createGatewayServer(options, { session, authorization: caller.authorization });
    res.on("close", () => {
      void transport.close();
      void server.close();
    });
    await server.connect(transport);
    await inner.handleRequest(req, res, req.body);
  } catch (error) {
    options.log.error({ err: error }, "MCP gateway request failed");
    if (!res.headersSent) res.status(500).json(jsonRpcError(-32603, "internal error"));
  }
}

async function stream(options: McpEndpointOptions, req: Request, res: Response): Promise<void> {
  const caller = res.locals.caller as Authenticated;
  try {
    const session = await sessionOf(options, req, res, caller);
    if (session === undefined) return;
    await options.streams.serve({ session, authorization: caller.authorization }, req, res);
  } catch (error) {
    options.log.error({ err: error }, "MCP gateway stream failed");
    if (!res.headersSent) res.status(500).json(jsonRpcError(-32603, "internal error"));
  }
}

async function end(options: McpEndpointOptions, req: Request, res: Response): Promise<void> {
  const caller = res.locals.caller as Authenticated;
  try {
    const session = await sessionOf(options, req, res, caller);
    if (session === undefined) return;
    await options.sessions.delete(session.id);
    await endSubscriptions(options, session, caller.authorization);
    options.log.info({ mcp_session: session.id }, "MCP gateway session ended by its client");
    res.status(200).end();
  } catch (error) {
    options.log.error({ err: error }, "MCP gateway session could not be ended");
    if (!res.headersSent) res.status(500).json(jsonRpcError(-32603, "internal error"));
  }
}

/**
 * Tells the servers a session that ended no longer wants its resources' updates, so the worker's
 * upstream subscriptions do not outlive it. The session is gone either way; a failure is logged.
 */
async function endSubscriptions(
  options: McpEndpointOptions,
  session: McpSession,
  authorization: string,
): Promise<void> {
  const held = Object.entries(session.subscriptions ?? {});
  const ended = await Promise.allSettled(
    held.map(([uri, server]) =>
      dispatchOperation(options.dispatch, {
        sessionId: session.id,
        authorization,
        operation: subscription(server, uri, "unsubscribe"),
      }),
    ),
  );
  ended.forEach((outcome, index) => {
    if (outcome.status === "fulfilled") return;
    options.log.warn(
      { err: outcome.reason, mcp_session: session.id, uri: held[index]?.[0] },
      "a subscription of an ended MCP session was not ended on its server",
    );
  });
}

/**
 * The request's session: 400 without a session id, 404 for one that is unknown or expired (the
 * client then starts a new session, as the specification says), 403 for another caller's.
 */
async function sessionOf(
  options: McpEndpointOptions,
  req: Request,
  res: Response,
  caller: Authenticated,
): Promise<McpSession | undefined> {
  const id = req.headers[SESSION_HEADER];
  if (typeof id !== "string" || id === "") {
    res.status(400).json(jsonRpcError(-32000, "Bad Request: Mcp-Session-Id header is required"));
    return undefined;
  }
  const session = await options.sessions.get(id);
  if (session === undefined) {
    res.status(404).json(jsonRpcError(-32001, "Session not found"));
    return undefined;
  }
  if (session.principal !== caller.principal.id) {
    res.status(403).json(jsonRpcError(-32000, "Forbidden: the session belongs to another principal"));
    return undefined;
  }
  await options.sessions.touch(session);
  return session;
}

function initializeRequestOf(body: unknown): InitializeRequest | undefined {
  const messages: unknown[] = Array.isArray(body) ? body : [body];
  return messages.find((message): message is InitializeRequest => isInitializeRequest(message));
}
