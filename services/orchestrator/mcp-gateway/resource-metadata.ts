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
 * The configured issuer when it is an http(s) URL, as OAuth discovery needs one; undefined for a
 * plain name such as the development issuer `loom-dev`.
 */
export function issuerUrlOf(issuer: string): string | undefined {
  return /^https?:\/\//i.test(issuer) && URL.canParse(issuer) ? issuer : undefined;
}

/**
 * Serves the protected resource metadata: the resource is the gateway's `/mcp` URL, and tokens for
 * it come from the identity provider acp-policy trusts, named by its issuer URL; when the issuer
 * is no URL (dev mode), from the development authorization server on this edge.
 */
export function resourceMetadataHandler(options: {
  publicUrl: string | undefined;
  authorizationServer: string | undefined;
}): RequestHandler {
  return (req, res) => {
    const base = baseUrlOf(req, options.publicUrl);
    res.set("Cache-Control", "max-age=300").json({
      resource: `${base}${MCP_PATH}`,
      authorization_servers: [options.authorizationServer ?? base],
      bearer_methods_supported: ["header"],
      resource_name: "Loom MCP gateway",
    });
  };
}
