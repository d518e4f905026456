import { randomUUID } from "node:crypto";
import type { Transport, TransportSendOptions } from "@modelcontextprotocol/sdk/shared/transport.js";
import {
  isJSONRPCErrorResponse,
  isJSONRPCRequest,
  isJSONRPCResultResponse,
  type JSONRPCErrorResponse,
  type JSONRPCMessage,
  JSONRPCResponseSchema,
  type JSONRPCResultResponse,
  type MessageExtraInfo,
} from "@modelcontextprotocol/sdk/types.js";
import type { NatsConnection, Subscription } from "@nats-io/transport-node";
import { mcpClientResponseSubject } from "../../../schemas/subjects.ts";
import { encodeJson, type Logger, listen } from "../../kit/index.ts";

type ClientResponse = JSONRPCResultResponse | JSONRPCErrorResponse;

/** Whether a POST body holds only the client's answers to requests the gateway sent it. */
export function clientResponsesOf(body: unknown): ClientResponse[] | undefined {
  const messages: unknown[] = Array.isArray(body) ? body : [body];
  const responses = messages.filter(
    (message): message is ClientResponse =>
      isJSONRPCResultResponse(message) || isJSONRPCErrorResponse(message),
  );
  return responses.length > 0 && responses.length === messages.length ? responses : undefined;
}

/** Sends each answer to the replica whose request (named by its id) waits for it. */
export function routeClientResponses(
  nc: NatsConnection,
  sessionId: string,
  responses: ClientResponse[],
): void {
  for (const response of responses) {
    if (typeof response.id !== "string") continue;
    nc.publish(mcpClientResponseSubject(sessionId, response.id), encodeJson(response));
  }
}

/**
 * A request's transport that can ask the client something (sampling, elicitation) on that
 * request's SSE stream. Each HTTP request has its own stateless server, whose request ids start
 * at 0, and the client answers with a POST of its own that may reach any replica. So a request
 * the server sends goes out under a fresh UUID (unique in the session), and the answer comes back
 * over NATS, under its original id, to the server that waits for it.
 */
export class AnsweringTransport implements Transport {
  readonly #inner: Transport;
  readonly #nc: NatsConnection;
  readonly #sessionId: string;
  readonly #log: Logger;
  /** Original id of each request sent, by the id it went out with. */
  readonly #waiting = new Map<string, { original: string | number; subscription: Subscription }>();
  onmessage?: (message: JSONRPCMessage, extra?: MessageExtraInfo) => void;
  onclose?: () => void;
  onerror?: (error: Error) => void;

  constructor(inner: Transport, nc: NatsConnection, sessionId: string, log: Logger) {
    this.#inner = inner;
    this.#nc = nc;
    this.#sessionId = sessionId;
    this.#log = log;
  }

  async start(): Promise<void> {
    this.#inner.onmessage = (message, extra) => this.onmessage?.(message, extra);
    this.#inner.onclose = () => {
      this.#forgetAll();
      this.onclose?.();
    };
    this.#inner.onerror = (error) => this.onerror?.(error);
    await this.#inner.start();
  }

  async send(message: JSONRPCMessage, options?: TransportSendOptions): Promise<void> {
    if (isJSONRPCRequest(message)) {
      const id = randomUUID();
      const subscription = listen(this.#nc, {
        subject: mcpClientResponseSubject(this.#sessionId, id),
        schema: JSONRPCResponseSchema,
        what: "client answer",
        log: this.#log,
        // A malformed message is dropped and the request still waits for the client's answer.
        handle: (response) => {
          const waiting = this.#waiting.get(id);
          if (waiting === undefined) return;
          waiting.subscription.unsubscribe();
          this.#waiting.delete(id);
          this.onmessage?.({ ...response, id: message.id });
        },
      });
      this.#waiting.set(id, { original: message.id, subscription });
      // The answer may come through another replica's connection: the subscription is in place first.
      await this.#nc.flush();
      await this.#inner.send({ ...message, id }, options);
      return;
    }
    // The server cancelling a request it sent names it by its original id; the client knows the other.
    if ("method" in message && message.method === "notifications/cancelled") {
      const sent = [...this.#waiting].find(([, waiting]) => waiting.original === message.params?.requestId);
      if (sent !== undefined) {
        await this.#inner.send({ ...message, params: { ...message.params, requestId: sent[0] } }, options);
        return;
      }
    }
    await this.#inner.send(message, options);
  }

  async close(): Promise<void> {
    this.#forgetAll();
    await this.#inner.close();
  }

  #forgetAll(): void {
    for (const { subscription } of this.#waiting.values()) subscription.unsubscribe();
    this.#waiting.clear();
  }
}
