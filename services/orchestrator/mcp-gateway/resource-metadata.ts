import type { Request, RequestHandler } from "express";

/** Where the gateway serves MCP, and its OAuth 2.0 protected resource metadata (RFC 9728). */
export const MCP_PATH = "/mcp";
export const RESOURCE_METADATA_PATH = "/.well-known/oauth-protected-resource";

/** The gateway's base URL: the configured public one, else as this request reached it. */
export function baseUrlOf(req: Request, publicUrl: string | undefined): string {
  return (publicUrl ?? `${req.protocol}://${req.get("host") ?? "localhost"}`).replace(/\/+$/, "");
}

/** The metadata document's URL, as `WWW-Authenticate` points clients to it. */
export function resourceMetadataUrl(req: Request, publicUrl: string | undefined): string {
  return `${baseUrlOf(req, publicUrl)}${RESOURCE_METADATA_PATH}${MCP_PATH}`;
}

/**
 * Serves the protected resource metadata: the resource is the gateway's `/mcp` URL, and tokens for
 * it come from the identity provider acp-policy trusts.
 */
export function resourceMetadataHandler(options: {
  publicUrl: string | undefined;
  authorizationServers: readonly string[];
}): RequestHandler {
  return (req, res) => {
    res.set("Cache-Control", "max-age=300").json({
      resource: `${baseUrlOf(req, options.publicUrl)}${MCP_PATH}`,
      authorization_servers: options.authorizationServers,
      bearer_methods_supported: ["header"],
      resource_name: "Loom MCP gateway",
    });
  };
}
