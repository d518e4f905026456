import type { IncomingMessage, RequestListener, Server, ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import {
  createHttpServer,
  DEFAULT_A2A_PORT,
  guardRequests,
  type HttpAllowList,
  type Logger,
} from "../kit/index.ts";

/** What answers the edge's requests once it is loaded. */
export interface HttpApp {
  handle(req: IncomingMessage, res: ServerResponse): void;
  close(): Promise<void>;
}

export interface HttpEdge {
  port: number;
  /** Starts loading the app now rather than at the first request. */
  load(): void;
  close(): Promise<void>;
}

/**
 * Listens for the A2A edge, the MCP gateway and the console at once, and answers with the app
 * `open` makes, loading it at the first request or at `load()`, whichever comes first: its modules
 * (express, the A2A and MCP SDKs' server sides, the console) are a fifth of the orchestrator's
 * start, and need not delay the bus side. A request that comes before the app is loaded waits for
 * it; one that comes when it failed to open (the broker, say: a bad setting fails the service's
 * start instead, when its config is read) is answered 503, and the next one tries again.
 */
export async function listenHttpEdge(options: {
  /** The address it binds (`LOOM_HTTP_HOST`): loopback unless told. */
  host: string;
  /** Undefined: the default port, or a free one when it is taken. */
  port: number | undefined;
  /** The Host names and Origins every route answers to. */
  allowed: HttpAllowList;
  open: (port: number) => Promise<HttpApp>;
  log: Logger;
}): Promise<HttpEdge> {
  let app: Promise<HttpApp> | undefined;
  let port = 0;
  const loaded = () => {
    app ??= options.open(port).catch((error: unknown) => {
      app = undefined;
      throw error;
    });
    return app;
  };
  const handle: RequestListener = (req, res) => {
    loaded().then(
      (opened) => opened.handle(req, res),
      (error: unknown) => {
        options.log.error({ err: error }, "cannot open the HTTP edge");
        res
          .writeHead(503, { "Content-Type": "text/plain" })
          .end("the HTTP edge cannot open now; try again\n");
      },
    );
  };
  const server = createHttpServer(guardRequests(options.allowed, handle));
  try {
    await listen(server, options.host, options.port ?? DEFAULT_A2A_PORT);
  } catch (error) {
    if (options.port !== undefined || (error as NodeJS.ErrnoException).code !== "EADDRINUSE") throw error;
    options.log.warn({ port: DEFAULT_A2A_PORT }, "default A2A port in use; taking a free one");
    await listen(server, options.host, 0);
  }
  port = (server.address() as AddressInfo).port;
  options.log.info({ host: options.host, port }, "serving A2A over HTTP");
  return {
    port,
    load: () => {
      loaded().catch((error: unknown) => options.log.error({ err: error }, "cannot open the HTTP edge"));
    },
    async close() {
      await app?.then(
        (opened) => opened.close(),
        () => undefined,
      );
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      // Open streams (the console's live views) would hold the server open until they end.
      server.closeAllConnections();
      await closed;
    },
  };
}

function listen(server: Server, host: string, port: number): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
}
