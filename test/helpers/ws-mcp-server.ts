import type { AddressInfo } from "node:net";
import type { Server } from "@modelcontextprotocol/sdk/server/index.js";
import type { Transport } from "@modelcontextprotocol/sdk/shared/transport.js";
import { type JSONRPCMessage, JSONRPCMessageSchema } from "@modelcontextprotocol/sdk/types.js";
import { type WebSocket, WebSocketServer } from "ws";

/** One accepted WebSocket as an MCP server transport: one JSON-RPC message per text frame. */
class ServerWebSocketTransport implements Transport {
  onclose?: () => void;
  onerror?: (error: Error) => void;
  onmessage?: (message: JSONRPCMessage) => void;
  readonly #socket: WebSocket;

  constructor(socket: WebSocket) {
    this.#socket = socket;
  }

  async start(): Promise<void> {
    this.#socket.on("message", (data) => {
      try {
        this.onmessage?.(JSONRPCMessageSchema.parse(JSON.parse(data.toString("utf8"))));
      } catch (error) {
        this.onerror?.(error instanceof Error ? error : new Error(String(error)));
      }
    });
    this.#socket.on("close", () => this.onclose?.());
    this.#socket.on("error", (error) => this.onerror?.(error));
  }

  async send(message: JSONRPCMessage): Promise<void> {
    this.#socket.send(JSON.stringify(message));
  }

  async close(): Promise<void> {
    this.#socket.close();
  }
}

export interface WsMcpServer extends AsyncDisposable {
  url: string;
  /** Upgrades refused because the bearer token was missing or wrong. */
  refused: number;
}

/**
 * An MCP server over WebSocket (subprotocol `mcp`) on a free port: each connection gets its own
 * `makeServer()`. With `token`, an upgrade without `Authorization: Bearer <token>` gets 401.
 */
export async function startWsMcpServer(makeServer: () => Server, token?: string): Promise<WsMcpServer> {
  const state = { refused: 0 };
  const wss = new WebSocketServer({
    port: 0,
    host: "127.0.0.1",
    handleProtocols: (protocols) => (protocols.has("mcp") ? "mcp" : false),
    verifyClient: (info, done) => {
      if (token === undefined || info.req.headers.authorization === `Bearer ${token}`) return done(true);
      state.refused++;
      done(false, 401, "Unauthorized");
    },
  });
  await new Promise<void>((resolve) => wss.once("listening", resolve));
  wss.on("connection", (socket) => {
    void makeServer().connect(new ServerWebSocketTransport(socket));
  });
  const { port } = wss.address() as AddressInfo;
  return {
    url: `ws://127.0.0.1:${port}`,
    get refused() {
      return state.refused;
    },
    async [Symbol.asyncDispose]() {
      for (const client of wss.clients) client.terminate();
      await new Promise<void>((resolve) => wss.close(() => resolve()));
    },
  };
}
