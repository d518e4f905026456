import type { Transport } from "@modelcontextprotocol/sdk/shared/transport.js";
import { type JSONRPCMessage, JSONRPCMessageSchema } from "@modelcontextprotocol/sdk/types.js";

/** The WebSocket subprotocol MCP servers expect. */
const SUBPROTOCOL = "mcp";

/**
 * MCP over WebSocket: the same wire as the SDK's WebSocketClientTransport (subprotocol `mcp`, one
 * JSON-RPC message per text frame), plus request headers. The SDK's transport opens its socket
 * with the browser API's two arguments, so it cannot send an Authorization header; Node's
 * WebSocket takes headers in its init object.
 */
export class HeaderWebSocketTransport implements Transport {
  onclose?: () => void;
  onerror?: (error: Error) => void;
  onmessage?: (message: JSONRPCMessage) => void;
  readonly #url: URL;
  readonly #headers: Record<string, string>;
  #socket: WebSocket | undefined;

  constructor(url: URL, headers: Record<string, string>) {
    this.#url = url;
    this.#headers = headers;
  }

  start(): Promise<void> {
    if (this.#socket !== undefined) throw new Error("the WebSocket transport is started already");
    return new Promise((resolve, reject) => {
      const socket = new WebSocket(this.#url, { protocols: [SUBPROTOCOL], headers: this.#headers });
      this.#socket = socket;
      let opened = false;
      socket.onopen = () => {
        opened = true;
        resolve();
      };
      socket.onerror = (event) => {
        // Node does not say why an upgrade failed (a 401 looks like any refusal).
        const error =
          "error" in event && event.error instanceof Error
            ? event.error
            : new Error(`WebSocket connection to ${this.#url.origin} failed`);
        if (!opened) reject(error);
        this.onerror?.(error);
      };
      socket.onclose = () => this.onclose?.();
      socket.onmessage = (event: MessageEvent) => {
        let message: JSONRPCMessage;
        try {
          message = JSONRPCMessageSchema.parse(JSON.parse(String(event.data)));
        } catch (error) {
          this.onerror?.(error instanceof Error ? error : new Error(String(error)));
          return;
        }
        this.onmessage?.(message);
      };
    });
  }

  async send(message: JSONRPCMessage): Promise<void> {
    if (this.#socket?.readyState !== WebSocket.OPEN) throw new Error("the WebSocket is not open");
    this.#socket.send(JSON.stringify(message));
  }

  async close(): Promise<void> {
    this.#socket?.close();
  }
}
