import type { RequestHandler } from "express";

/**
 * Refuses (403) a request whose `Origin` is not allowed, as the MCP specification asks of a
 * Streamable HTTP server against DNS rebinding: a web page on another site cannot drive the
 * gateway through a browser. Clients that send no Origin (not browsers) pass. An allowed entry
 * without a port allows that scheme and host on any port.
 */
export function originGuard(allowed: readonly string[]): RequestHandler {
  const entries = allowed.map((origin) => new URL(origin));
  return (req, res, next) => {
    const origin = req.headers.origin;
    if (origin === undefined || isAllowed(origin, entries)) return next();
    res.status(403).json({
      jsonrpc: "2.0",
      id: null,
      error: {
        code: -32000,
        message: `Forbidden: origin ${origin} is not allowed (LOOM_MCP_ALLOWED_ORIGINS)`,
      },
    });
  };
}

function isAllowed(origin: string, entries: URL[]): boolean {
  let url: URL;
  try {
    url = new URL(origin);
  } catch {
    return false;
  }
  return entries.some(
    (entry) =>
      entry.protocol === url.protocol &&
      entry.hostname === url.hostname &&
      (entry.port === "" || entry.port === url.port),
  );
}
