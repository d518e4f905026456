import { createServer, type Server } from "node:http";
import type { AgentCard } from "@a2a-js/sdk";
import { agentCardHandler, jsonRpcHandler, restHandler } from "@a2a-js/sdk/server/express";
import express from "express";
import type { Logger } from "../../kit/index.ts";
import { A2A_JSONRPC_PATH, A2A_REST_PATH } from "./agent-card.ts";
import { bearerToken, userOf } from "./bearer-user.ts";
import type { NatsA2ARequestHandler } from "./nats-request-handler.ts";

/**
 * The A2A HTTP edge: the Agent Card at `/.well-known/agent-card.json`, JSON-RPC at `/a2a/jsonrpc`
 * and HTTP+JSON at `/a2a/rest`. A call without a bearer token is refused with 401 before it reaches a handler.
 */
export async function startA2AEdge(options: {
  port: number;
  handler: NatsA2ARequestHandler;
  card: () => AgentCard;
  log: Logger;
}): Promise<{ server: Server; close(): Promise<void> }> {
  const app = express();
  app.use(
    "/.well-known/agent-card.json",
    agentCardHandler({ agentCardProvider: async () => options.card() }),
  );
  const requireBearer: express.RequestHandler = (req, res, next) => {
    if (bearerToken(req) !== undefined) return next();
    res
      .status(401)
      .set("WWW-Authenticate", 'Bearer realm="loom"')
      .json({
        jsonrpc: "2.0",
        id: null,
        error: { code: -32001, message: "a bearer token is required (Authorization: Bearer …)" },
      });
  };
  app.use(
    A2A_JSONRPC_PATH,
    requireBearer,
    jsonRpcHandler({ requestHandler: options.handler, userBuilder: userOf }),
  );
  app.use(
    A2A_REST_PATH,
    requireBearer,
    restHandler({ requestHandler: options.handler, userBuilder: userOf }),
  );
  const server = createServer(app);
  await new Promise<void>((resolve) => server.listen(options.port, resolve));
  const address = server.address();
  options.log.info(
    { port: typeof address === "object" && address !== null ? address.port : options.port },
    "serving A2A over HTTP",
  );
  return {
    server,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
