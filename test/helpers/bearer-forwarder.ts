import { createServer, request } from "node:http";
import type { AddressInfo } from "node:net";

/** A local HTTP endpoint that forwards to another and adds a bearer token to every request. */
export interface BearerForwarder extends AsyncDisposable {
  /** The target's URL with the forwarder's origin (same path). */
  url: string;
}

/**
 * For clients that cannot send a token: `conformance server` takes only `--url` (no header option
 * as of 0.1.16, modelcontextprotocol/conformance#453). The token is a real one that the target
 * verifies; nothing is relaxed on the target's side. Bodies stream both ways (SSE included).
 * Host and Origin that name the forwarder are rewritten to name the target, as a port forward
 * would; any other Host or Origin (a DNS rebinding attempt) reaches the target unchanged.
 */
export async function startBearerForwarder(target: string, token: string): Promise<BearerForwarder> {
  const targetUrl = new URL(target);
  let ownHost = "";
  const server = createServer((req, res) => {
    const headers = { ...req.headers, authorization: `Bearer ${token}` };
    if (headers.host === ownHost) headers.host = targetUrl.host;
    if (headers.origin === `http://${ownHost}`) headers.origin = targetUrl.origin;
    const upstream = request(
      { hostname: targetUrl.hostname, port: targetUrl.port, path: req.url, method: req.method, headers },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      },
    );
    upstream.on("error", (error) => {
      if (!res.headersSent) res.writeHead(502, { "content-type": "text/plain" });
      res.end(`forwarder: ${error.message}`);
    });
    // A client that hangs up (a closed SSE stream) hangs up upstream too.
    res.on("close", () => upstream.destroy());
    req.pipe(upstream);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  ownHost = `127.0.0.1:${port}`;
  return {
    url: `http://${ownHost}${targetUrl.pathname}`,
    async [Symbol.asyncDispose]() {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}
