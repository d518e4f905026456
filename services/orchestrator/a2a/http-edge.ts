import { type AgentCard, AgentCard as AgentCardCodec } from "@a2a-js/sdk";
import { jsonRpcHandler, restHandler } from "@a2a-js/sdk/server/express";
import express from "express";
import { ErrorCode } from "../../../schemas/errors.ts";
import { type Logger, toWireError } from "../../kit/index.ts";
import { httpErrorHandler, jsonRpcFailure } from "../http-body-errors.ts";
import { A2A_JSONRPC_PATH, A2A_REST_PATH } from "./agent-card.ts";
import { bearerToken, userOf } from "./bearer-user.ts";
import type { NatsA2ARequestHandler } from "./nats-request-handler.ts";

/**
 * The A2A HTTP edge: the Agent Card at `/.well-known/agent-card.json`, JSON-RPC at `/a2a/jsonrpc`
 * and HTTP+JSON at `/a2a/rest`. A call without a bearer token acp-policy accepts (signature, issuer,
 * audience, expiry) is refused with 401 before it reaches a handler.
 */
export function a2aApp(options: {
  handler: NatsA2ARequestHandler;
  card: () => AgentCard;
  /** Verifies a bearer token with acp-policy; rejects UNAUTHENTICATED for a token it refuses. */
  authenticate: (authorization: string) => Promise<unknown>;
  log: Logger;
  /** More routes on the same port (the MCP gateway). */
  routes?: express.Router[];
}): express.Express {
  const app = express();
  for (const routes of options.routes ?? []) app.use(routes);
  // The card in A2A's JSON form (the SDK's handler would serialize its internal oneOf shapes), and
  // revalidated on every use: `loom workflow apply` changes its skills at any time.
  app.get("/.well-known/agent-card.json", (_req, res) => {
    res.set("Cache-Control", "no-cache").type("application/json");
    res.send(JSON.stringify(AgentCardCodec.toJSON(options.card())));
  });
  const requireBearer = (binding: Binding): express.RequestHandler => {
    return (req, res, next) => {
      const token = bearerToken(req);
      if (token === undefined) {
        unauthenticated(
          res,
          binding,
          'Bearer realm="loom"',
          "a bearer token is required (Authorization: Bearer …)",
        );
        return;
      }
      options.authenticate(`Bearer ${token}`).then(
        () => next(),
        (error: unknown) => {
          const wire = toWireError(error);
          if (wire.code !== ErrorCode.UNAUTHENTICATED) {
            options.log.error({ err: error }, "cannot authenticate an A2A request");
            res.status(503).json(errorBody(binding, 503, `cannot check the token now: ${wire.message}`));
            return;
          }
          const description = wire.message.replaceAll('"', "'");
          unauthenticated(
            res,
            binding,
            `Bearer realm="loom", error="invalid_token", error_description="${description}"`,
            wire.message,
          );
        },
      );
    };
  };
  app.use(
    A2A_JSONRPC_PATH,
    requireBearer("jsonrpc"),
    jsonRpcHandler({ requestHandler: options.handler, userBuilder: userOf }),
  );
  app.use(
    A2A_REST_PATH,
    requireBearer("rest"),
    restHandler({ requestHandler: options.handler, userBuilder: userOf }),
  );
  // A body over the limit (or not JSON) an authenticated caller sends: the binding's own JSON error.
  app.use(A2A_JSONRPC_PATH, httpErrorHandler(options.log, jsonRpcFailure));
  app.use(
    A2A_REST_PATH,
    httpErrorHandler(options.log, ({ status, code, message }) => ({
      error: { code: status, status: code, message, details: [] },
    })),
  );
  // Whatever else escapes a route (the gateway's, the console's): JSON, never express's HTML page.
  app.use(httpErrorHandler(options.log, ({ code, message }) => ({ error: { code, message } })));
  return app;
}

type Binding = "jsonrpc" | "rest";

/**
 * JSON-RPC's server-error code for a refused caller: A2A defines none, and its -32001 means
 * TaskNotFound, so the HTTP status (401) and `data.reason` say what it is.
 */
export const JSON_RPC_UNAUTHENTICATED = -32000;

/** An error body in the binding's own form: a JSON-RPC error, or google.rpc.Status for HTTP+JSON. */
function errorBody(binding: Binding, status: number, message: string): object {
  const reason = status === 401 ? "UNAUTHENTICATED" : "UNAVAILABLE";
  return binding === "jsonrpc"
    ? {
        jsonrpc: "2.0",
        id: null,
        error: { code: status === 401 ? JSON_RPC_UNAUTHENTICATED : -32603, message, data: { reason } },
      }
    : { error: { code: status, status: reason, message, details: [] } };
}

function unauthenticated(res: express.Response, binding: Binding, challenge: string, message: string): void {
  res
    .status(401)
    .set("WWW-Authenticate", challenge)
    .json(errorBody(binding, 401, message));
}
