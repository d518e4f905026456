import type { RequestHandler, Response } from "express";
import { ErrorCode } from "../../../schemas/errors.ts";
import type { Principal } from "../../../schemas/policy.ts";
import { type Logger, toWireError } from "../../kit/index.ts";
import { bearerToken } from "../a2a/bearer-user.ts";
import type { GatewayPolicy } from "./gateway-policy.ts";
import { resourceMetadataUrl } from "./resource-metadata.ts";

/** What a request that passed authentication carries on to the MCP handlers (`res.locals`). */
export interface Authenticated {
  principal: Principal;
  authorization: string;
}

/**
 * Requires a bearer token acp-policy accepts (signature, issuer, audience, expiry), as the MCP
 * authorization specification asks: without one, 401 with `WWW-Authenticate` pointing to the
 * protected resource metadata; with a refused one, 401 `invalid_token`.
 */
export function bearerAuth(options: {
  policy: GatewayPolicy;
  publicUrl: string | undefined;
  log: Logger;
}): RequestHandler {
  return (req, res, next) => {
    const metadata = resourceMetadataUrl(req, options.publicUrl);
    const token = bearerToken(req);
    if (token === undefined) {
      unauthorized(res, `Bearer resource_metadata="${metadata}"`, "a bearer token is required");
      return;
    }
    const authorization = `Bearer ${token}`;
    options.policy.authenticate(authorization).then(
      (principal) => {
        const locals: Authenticated = { principal, authorization };
        res.locals.caller = locals;
        next();
      },
      (error: unknown) => {
        const wire = toWireError(error);
        if (wire.code !== ErrorCode.UNAUTHENTICATED) {
          options.log.error({ err: error }, "cannot authenticate an MCP gateway request");
          res.status(503).json(jsonRpcError(-32603, `cannot check the token now: ${wire.message}`));
          return;
        }
        const description = wire.message.replaceAll('"', "'");
        unauthorized(
          res,
          `Bearer error="invalid_token", error_description="${description}", resource_metadata="${metadata}"`,
          wire.message,
        );
      },
    );
  };
}

function unauthorized(res: Response, challenge: string, message: string): void {
  res.status(401).set("WWW-Authenticate", challenge).json(jsonRpcError(-32001, message));
}

export function jsonRpcError(code: number, message: string): object {
  return { jsonrpc: "2.0", id: null, error: { code, message } };
}
