import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import type { AgentCard } from "@a2a-js/sdk";
import { agentCardHandler, jsonRpcHandler, restHandler } from "@a2a-js/sdk/server/express";
import express from "express";
import { ErrorCode } from "../../../schemas/errors.ts";
import { type Logger, LoomError } from "../../kit/index.ts";
import { A2A_JSONRPC_PATH, A2A_REST_PATH } from "./agent-card.ts";
import { bearerToken, userOf } from "./bearer-user.ts";
import type { NatsA2ARequestHandler } from "./nats-request-handler.ts";

/**
 * The A2A HTTP edge: the Agent Card at `/.well-known/agent-card.json`, JSON-RPC at `/a2a/jsonrpc`
 * and HTTP+JSON at `/a2a/rest`. A call without a valid bearer token (verified by acp-policy:
 * signature, issuer, audience, expiry) is refused with 401 before it reaches a handler.
 */
/** The edge's port when none is configured. */
export const DEFAULT_A2A_PORT = 7410;

export async function startA2AEdge(options: {
  /** Undefined: the default port, or a free one when it is taken. */
  port: number | undefined;
  handler: NatsA2ARequestHandler;
  /** Verifies a bearer token (`Authorization` value); throws UNAUTHENTICATED when it is refused. */
  authenticate: (authorization: string) => Promise<unknown>;
  card: () => AgentCard;
  log: Logger;
  /** More routes on the same port (the MCP gateway). */
  routes?: express.Router[];
}): Promise<{ port: number; close(): Promise<void> }> {
  const app = express();
  for (const routes of options.routes ?? []) app.use(routes);
  app.use(
    "/.well-known/agent-card.json",
    agentCardHandler({ agentCardProvider: async () => options.card() }),
  );
  const refuse = (res: express.Response, status: number, message: string) =>
    res
      .status(status)
      .set("WWW-Authenticate", 'Bearer realm="loom"')
      .json({ jsonrpc: "2.0", id: null, error: { code: -32001, message } });
  const requireBearer: express.RequestHandler = (req, res, next) => {
    const token = bearerToken(req);
    if (token === undefined) {
      refuse(res, 401, "a bearer token is required (Authorization: Bearer …)");
      return;
    }
    options.authenticate(`Bearer ${token}`).then(
      () => next(),
      (error: unknown) => {
        if (error instanceof LoomError && error.code === ErrorCode.UNAUTHENTICATED) {
          refuse(res, 401, `UNAUTHENTICATED: ${error.message}`);
        } else {
          options.log.warn({ err: error }, "cannot verify an A2A caller's token");
          refuse(res, 503, "the token cannot be verified now; try again");
        }
      },
    );
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
  try {
    await listen(server, options.port ?? DEFAULT_A2A_PORT);
  } catch (error) {
    if (options.port !== undefined || (error as NodeJS.ErrnoException).code !== "EADDRINUSE") throw error;
    options.log.warn({ port: DEFAULT_A2A_PORT }, "default A2A port in use; taking a free one");
    await listen(server, 0);
  }
  const { port } = server.address() as AddressInfo;
  options.log.info({ port }, "serving A2A over HTTP");
  return {
    port,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

function listen(server: Server, port: number): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, () => {
      server.off("error", reject);
      resolve();
    });
  });
}
