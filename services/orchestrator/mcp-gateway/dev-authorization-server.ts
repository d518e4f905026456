import type { NatsConnection } from "@nats-io/transport-node";
import express, { type Request, type Response } from "express";
import { DevJwksContract, DevTokenContract } from "../../../schemas/contracts.ts";
import { type DevTokenRequest, OAUTH_ERROR_DETAIL } from "../../../schemas/dev-authorization.ts";
import { ErrorCode } from "../../../schemas/errors.ts";
import { Subjects } from "../../../schemas/subjects.ts";
import { type Logger, request, toWireError } from "../../kit/index.ts";
import { baseUrlOf } from "./resource-metadata.ts";

/** OAuth 2.0 authorization server metadata (RFC 8414), at the root of the issuer URL. */
export const AUTHORIZATION_SERVER_METADATA_PATH = "/.well-known/oauth-authorization-server";
export const TOKEN_PATH = "/oauth/token";
export const JWKS_PATH = "/oauth/jwks";
export const AUTHORIZE_PATH = "/oauth/authorize";
/** A token request is a handful of form fields. */
const MAX_FORM = "8kb";

export interface DevAuthorizationServerOptions {
  nc: NatsConnection;
  timeoutMs: number;
  publicUrl: string | undefined;
  log: Logger;
}

/**
 * The development authorization server on the gateway's edge, so an MCP client that follows OAuth
 * discovery (401, protected resource metadata, authorization server metadata) gets a token by
 * client credentials without `loom token issue`. The edge holds no key and no client: each answer
 * comes from acp-policy, which signs with the development key and refuses outside dev mode; then
 * every endpoint here is 404.
 */
export function devAuthorizationServer(options: DevAuthorizationServerOptions): express.Router {
  const router = express.Router();
  router.get(AUTHORIZATION_SERVER_METADATA_PATH, (req, res) => void metadata(options, req, res));
  router.get(JWKS_PATH, (_req, res) => void jwks(options, res));
  router.post(TOKEN_PATH, express.urlencoded({ extended: false, limit: MAX_FORM }), (req, res) => {
    void token(options, req, res);
  });
  // Metadata must name one (RFC 8414), but nothing here is granted by redirecting a user.
  router.get(AUTHORIZE_PATH, (_req, res) => {
    oauthFailure(
      res,
      400,
      "unsupported_response_type",
      "this development authorization server issues tokens by client credentials only",
    );
  });
  router.use(TOKEN_PATH, ((_error, _req, res, _next) => {
    oauthFailure(
      res,
      400,
      "invalid_request",
      "the token request is not a form (application/x-www-form-urlencoded) of at most 8 KiB",
    );
  }) satisfies express.ErrorRequestHandler);
  return router;
}

async function metadata(options: DevAuthorizationServerOptions, req: Request, res: Response): Promise<void> {
  try {
    // Asked only to learn whether this is dev mode: outside it there is no authorization server.
    await request(
      options.nc,
      Subjects.POLICY_DEV_JWKS,
      DevJwksContract,
      {},
      { timeoutMs: options.timeoutMs },
    );
  } catch (error) {
    refused(options, res, error);
    return;
  }
  const issuer = baseUrlOf(req, options.publicUrl);
  res.set("Cache-Control", "max-age=300").json({
    issuer,
    authorization_endpoint: `${issuer}${AUTHORIZE_PATH}`,
    token_endpoint: `${issuer}${TOKEN_PATH}`,
    jwks_uri: `${issuer}${JWKS_PATH}`,
    response_types_supported: [],
    grant_types_supported: ["client_credentials"],
    token_endpoint_auth_methods_supported: ["client_secret_basic", "client_secret_post"],
  });
}

async function jwks(options: DevAuthorizationServerOptions, res: Response): Promise<void> {
  try {
    const keys = await request(
      options.nc,
      Subjects.POLICY_DEV_JWKS,
      DevJwksContract,
      {},
      {
        timeoutMs: options.timeoutMs,
      },
    );
    res.set("Cache-Control", "max-age=300").json(keys);
  } catch (error) {
    refused(options, res, error);
  }
}

async function token(options: DevAuthorizationServerOptions, req: Request, res: Response): Promise<void> {
  const form = (req.body ?? {}) as Record<string, unknown>;
  const credentials = clientCredentialsOf(req, form);
  if (typeof credentials === "string") {
    oauthFailure(res, 400, "invalid_request", credentials);
    return;
  }
  const grantType = typeof form.grant_type === "string" ? form.grant_type : undefined;
  const { basic, ...client } = credentials;
  try {
    const issued = await request(
      options.nc,
      Subjects.POLICY_DEV_TOKEN,
      DevTokenContract,
      { ...(grantType === undefined ? {} : { grantType }), ...client },
      { timeoutMs: options.timeoutMs },
    );
    res
      .set({ "Cache-Control": "no-store", Pragma: "no-cache" })
      .json({ access_token: issued.accessToken, token_type: issued.tokenType, expires_in: issued.expiresIn });
  } catch (error) {
    refused(options, res, error, basic);
  }
}

/**
 * The client's id and secret from HTTP Basic (RFC 6749 section 2.3.1: each form-urlencoded) or
 * from the form; a string names what is wrong with the request.
 */
function clientCredentialsOf(
  req: Request,
  form: Record<string, unknown>,
): (Pick<DevTokenRequest, "clientId" | "clientSecret"> & { basic: boolean }) | string {
  const header = req.headers.authorization;
  const inForm = typeof form.client_secret === "string";
  if (header === undefined) {
    return {
      basic: false,
      ...(typeof form.client_id === "string" ? { clientId: form.client_id } : {}),
      ...(inForm ? { clientSecret: form.client_secret as string } : {}),
    };
  }
  if (inForm) return "use one client authentication method, not both Basic and client_secret";
  const match = /^Basic ([A-Za-z0-9+/=]+)$/i.exec(header);
  const decoded = match?.[1] === undefined ? "" : Buffer.from(match[1], "base64").toString("utf8");
  const colon = decoded.indexOf(":");
  if (colon < 0) return "the Authorization header must be Basic base64(client_id:client_secret)";
  try {
    return {
      basic: true,
      clientId: decodeURIComponent(decoded.slice(0, colon).replaceAll("+", " ")),
      clientSecret: decodeURIComponent(decoded.slice(colon + 1).replaceAll("+", " ")),
    };
  } catch {
    return "the Basic credentials are not form-urlencoded";
  }
}

/** A refusal as RFC 6749 section 5.2 words it; outside dev mode, 404: there is no server here. */
function refused(options: DevAuthorizationServerOptions, res: Response, error: unknown, basic = false): void {
  const wire = toWireError(error);
  const oauth = wire.details?.[OAUTH_ERROR_DETAIL];
  if (wire.code === ErrorCode.DEV_MODE_ONLY) {
    oauthFailure(res, 404, "invalid_request", wire.message);
  } else if (oauth === "invalid_client") {
    if (basic) res.set("WWW-Authenticate", 'Basic realm="loom-dev"');
    oauthFailure(res, 401, oauth, wire.message);
  } else if (typeof oauth === "string") {
    oauthFailure(res, 400, oauth, wire.message);
  } else {
    options.log.error({ err: error }, "development authorization server: acp-policy did not answer");
    oauthFailure(res, 503, "temporarily_unavailable", `cannot issue tokens now: ${wire.message}`);
  }
}

function oauthFailure(res: Response, status: number, error: string, description: string): void {
  res.status(status).set({ "Cache-Control": "no-store" }).json({ error, error_description: description });
}
