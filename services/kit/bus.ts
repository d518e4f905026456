import {
  headers as createHeaders,
  type Msg,
  type MsgHdrs,
  type NatsConnection,
  NoRespondersError,
  RequestError,
  TimeoutError,
} from "@nats-io/transport-node";
import type { z } from "zod";
import type { RequestContract } from "../../schemas/contracts.ts";
import { ErrorCode, type WireError, WireErrorSchema } from "../../schemas/errors.ts";
import { isToolTaskInbox } from "../../schemas/nats-users.ts";
import { Headers } from "../../schemas/subjects.ts";
import { describeIssues, LoomError, toWireError } from "./errors.ts";
import type { Logger } from "./logger.ts";
import type { MuxedRequests } from "./muxed-requests.ts";
import { extractTraceContext, injectTraceContext, SpanKind, withSpan } from "./telemetry.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export function encodeJson(value: unknown): Uint8Array {
  return encoder.encode(JSON.stringify(value));
}

/** Parses a payload with its schema; anything malformed becomes an INVALID_MESSAGE error. */
export function parsePayload<Schema extends z.ZodType>(
  schema: Schema,
  data: Uint8Array,
  what: string,
): z.infer<Schema> {
  let json: unknown;
  try {
    json = JSON.parse(decoder.decode(data));
  } catch (cause) {
    throw new LoomError(ErrorCode.INVALID_MESSAGE, `${what} is not valid JSON`, { cause });
  }
  const parsed = schema.safeParse(json);
  if (!parsed.success) {
    throw new LoomError(
      ErrorCode.INVALID_MESSAGE,
      `${what} is malformed: ${describeIssues(parsed.error.issues)}`,
    );
  }
  return parsed.data;
}

/** Outgoing values are validated too: a bug here must not put a bad message on the bus. */
export function encodePayload<Schema extends z.ZodType>(
  schema: Schema,
  value: z.input<Schema>,
  what: string,
): Uint8Array {
  const parsed = schema.safeParse(value);
  if (!parsed.success) {
    throw new LoomError(
      ErrorCode.INTERNAL,
      `refusing to send a malformed ${what}: ${describeIssues(parsed.error.issues)}`,
    );
  }
  return encodeJson(parsed.data);
}

/** NATS headers from plain pairs, with the active trace context added. */
export function tracedHeaders(pairs: Record<string, string | undefined> = {}): MsgHdrs {
  const result = createHeaders();
  for (const [key, value] of Object.entries(pairs)) {
    if (value !== undefined) result.set(key, value);
  }
  injectTraceContext(result);
  return result;
}

export interface RequestOptions {
  timeoutMs: number;
  headers?: Record<string, string | undefined>;
  /** Answers come to this inbox rather than the connection's own (a `MuxedRequests` on an inbox subtree of its own). */
  inbox?: MuxedRequests;
}

/**
 * Sends a typed request and returns the parsed reply. A reply flagged with the `Loom-Error` header
 * is rethrown as the LoomError it carries; no responder and no answer in time are typed too.
 */
export async function request<Req extends z.ZodType, Res extends z.ZodType>(
  nc: NatsConnection,
  subject: string,
  contract: RequestContract<Req, Res>,
  body: z.input<Req>,
  options: RequestOptions,
): Promise<z.infer<Res>> {
  return withSpan(
    `send ${subject}`,
    {
      kind: SpanKind.CLIENT,
      attributes: {
        "messaging.system": "nats",
        "messaging.destination.name": subject,
        "messaging.operation.type": "send",
      },
    },
    async () => {
      const payload = encodePayload(contract.request, body, `request to ${subject}`);
      let reply: Msg;
      try {
        reply = await (options.inbox ?? nc).request(subject, payload, {
          timeout: options.timeoutMs,
          headers: tracedHeaders(options.headers),
        });
      } catch (cause) {
        throw requestFailure(subject, options.timeoutMs, cause);
      }
      if (reply.headers?.has(Headers.ERROR)) {
        throw LoomError.fromWire(parsePayload(WireErrorSchema, reply.data, `error reply from ${subject}`));
      }
      return parsePayload(contract.response, reply.data, `reply from ${subject}`);
    },
  );
}

function requestFailure(subject: string, timeoutMs: number, cause: unknown): LoomError {
  const noResponders =
    cause instanceof NoRespondersError ||
    (cause instanceof RequestError && cause.isNoResponders()) ||
    (cause instanceof Error && cause.cause instanceof NoRespondersError);
  if (noResponders) {
    return new LoomError(
      ErrorCode.AGENT_UNAVAILABLE,
      `nothing is serving ${subject}; is that service running?`,
      {
        cause,
      },
    );
  }
  const timedOut =
    cause instanceof TimeoutError || (cause instanceof Error && cause.cause instanceof TimeoutError);
  if (timedOut) {
    return new LoomError(ErrorCode.TIMEOUT, `no reply on ${subject} within ${timeoutMs} ms`, { cause });
  }
  return new LoomError(ErrorCode.AGENT_UNAVAILABLE, `request on ${subject} failed: ${String(cause)}`, {
    cause,
  });
}

/** What a request handler sees besides the parsed body. */
export interface RequestContext {
  /** The subject the request came on (it may carry an id, as in `loom.v1.runs.<runId>.input`). */
  subject: string;
  headers: MsgHdrs | undefined;
  /** The caller's `Authorization` header, if any. */
  authorization: string | undefined;
  /** Where the answer goes: a handler that answers later, from elsewhere, publishes there. */
  reply: string | undefined;
  /**
   * Runs `work` right after the answer (or the error reply) is sent, in the same turn: for records
   * about the request that must not delay its answer, and whose messages then leave in the same
   * socket write as the answer. A `work` that throws is logged.
   */
  afterReply(work: () => void): void;
}

/**
 * A handler's way to stay silent: for subjects served by every replica (no queue group), where
 * only the replica the request concerns should answer.
 */
export const NO_REPLY: unique symbol = Symbol("no reply");

export interface ServeOptions<Req extends z.ZodType, Res extends z.ZodType> {
  subject: string;
  /** Queue group: one member takes each request. Without one, every subscriber sees every request. */
  queue?: string;
  contract: RequestContract<Req, Res>;
  log: Logger;
  handle: (body: z.infer<Req>, context: RequestContext) => Promise<z.input<Res> | typeof NO_REPLY>;
  /**
   * For tasks acp-policy forwards: answer the inbox in the `Loom-Reply-To` header (the asker's),
   * so the answer goes straight back; the reply subject is acp-policy's, which hears a "no
   * responders" there. Only for subjects that nobody but acp-policy may publish to.
   */
  forwarded?: boolean;
}

export interface Service {
  /** Stops taking requests and waits for those in flight to be answered. */
  stop(): Promise<void>;
}

/**
 * Serves a request/reply subject in a queue group. Every request is answered: with the handler's
 * result, or with a typed error reply for a malformed request or a failed handler.
 */
export function serve<Req extends z.ZodType, Res extends z.ZodType>(
  nc: NatsConnection,
  options: ServeOptions<Req, Res>,
): Service {
  const inFlight = new Set<Promise<void>>();
  const subscription = nc.subscribe(options.subject, {
    ...(options.queue === undefined ? {} : { queue: options.queue }),
    callback: (error, msg) => {
      if (error !== null) {
        options.log.error({ err: error, subject: options.subject }, "subscription failed");
        return;
      }
      const handling = handleRequest(nc, msg, options)
        .catch((failure: unknown) =>
          options.log.error({ err: failure, subject: options.subject }, "request not handled"),
        )
        .finally(() => inFlight.delete(handling));
      inFlight.add(handling);
    },
  });
  return {
    async stop() {
      await subscription.drain();
      await Promise.allSettled(inFlight);
    },
  };
}

/** What an answer is sent through: the request itself, or the asker's inbox a forwarder named. */
interface Responder {
  respond(data: Uint8Array, options?: { headers?: MsgHdrs }): boolean;
}

/**
 * The asker's inbox a forwarded task names in `Loom-Reply-To`; only a tool-task inbox is accepted
 * (the one the worker's NATS user may publish to). Otherwise the answer goes to the forwarder.
 */
function forwardedReply(msg: Msg): string | undefined {
  const to = msg.headers?.get(Headers.REPLY_TO);
  return to !== undefined && isToolTaskInbox(to) ? to : undefined;
}

async function handleRequest<Req extends z.ZodType, Res extends z.ZodType>(
  nc: NatsConnection,
  msg: Msg,
  options: ServeOptions<Req, Res>,
): Promise<void> {
  const maxPayload = nc.info?.max_payload;
  const forwardedTo = options.forwarded === true ? forwardedReply(msg) : undefined;
  const responder: Responder =
    forwardedTo === undefined
      ? msg
      : {
          respond: (data, publishOptions) => {
            nc.publish(forwardedTo, data, publishOptions);
            return true;
          },
        };
  await withSpan(
    `process ${options.subject}`,
    {
      kind: SpanKind.SERVER,
      parent: extractTraceContext(msg.headers),
      attributes: {
        "messaging.system": "nats",
        "messaging.destination.name": options.subject,
        "messaging.operation.type": "process",
      },
    },
    async () => {
      if (msg.reply === undefined) {
        options.log.warn(
          { subject: options.subject },
          "request without a reply subject ignored: nobody could read the answer",
        );
        return;
      }
      const afterReply: Array<() => void> = [];
      try {
        const body = parsePayload(options.contract.request, msg.data, `request on ${options.subject}`);
        const result = await options.handle(body, {
          subject: msg.subject,
          headers: msg.headers,
          authorization: msg.headers?.get(Headers.AUTHORIZATION) || undefined,
          reply: forwardedTo ?? msg.reply,
          afterReply: (work) => afterReply.push(work),
        });
        if (result === NO_REPLY) return;
        const reply = encodePayload(options.contract.response, result, `reply on ${options.subject}`);
        respondWithin(responder, reply, { maxPayload, log: options.log, subject: options.subject });
      } catch (error) {
        const wire = toWireError(error);
        if (wire.code === ErrorCode.INTERNAL) {
          options.log.error({ err: error, subject: options.subject }, "request handler failed");
        }
        respondWithError(responder, wire, { maxPayload, log: options.log, subject: options.subject });
      } finally {
        for (const work of afterReply) {
          try {
            work();
          } catch (error) {
            options.log.error({ err: error, subject: options.subject }, "work after a reply failed");
          }
        }
      }
    },
  );
}

/** The most bytes an error reply takes: a longer message is cut, its details dropped. */
export const MAX_ERROR_BYTES = 8 * 1024;

/**
 * A wire error encoded in at most `maxBytes`: an error about a huge request may quote or list
 * much of it, and an error reply too large to send would leave the caller with no answer.
 */
function encodeWireError(wire: WireError, maxBytes = MAX_ERROR_BYTES): Uint8Array {
  const encoded = encodeJson(wire);
  if (encoded.byteLength <= maxBytes) return encoded;
  // A UTF-16 code unit takes at most 3 bytes in UTF-8; a quarter of the budget leaves room for the rest.
  const message = `${wire.message.slice(0, Math.floor(maxBytes / 4))}… (cut from ${encoded.byteLength} bytes)`;
  return encodeJson({ code: wire.code, message });
}

interface ReplyOptions {
  /** The broker's `max_payload`, when known. */
  maxPayload: number | undefined;
  log: Logger;
  subject: string;
}

/**
 * Answers a request with `reply`, or with a PAYLOAD_TOO_LARGE error when the reply would not fit
 * the broker's `max_payload`. Never throws: a reply that cannot be sent is logged.
 */
function respondWithin(msg: Responder, reply: Uint8Array, options: ReplyOptions): void {
  if (options.maxPayload !== undefined && reply.byteLength > options.maxPayload - HEADER_ROOM) {
    respondWithError(
      msg,
      {
        code: ErrorCode.PAYLOAD_TOO_LARGE,
        message: `the reply is ${reply.byteLength} bytes, over the broker's limit of ${options.maxPayload}; ask for less (or raise max_payload)`,
        details: { limit: "max_payload", value: reply.byteLength, max: options.maxPayload },
      },
      options,
    );
    return;
  }
  sendReply(msg, reply, undefined, options);
}

/** Answers a request with a typed error reply (flagged with the `Loom-Error` header), cut to fit. */
export function respondWithError(msg: Responder, wire: WireError, options: ReplyOptions): void {
  const replyHeaders = createHeaders();
  replyHeaders.set(Headers.ERROR, wire.code);
  sendReply(msg, encodeWireError(wire), replyHeaders, options);
}

/** Room kept under `max_payload` for a reply's headers. */
const HEADER_ROOM = 1_024;

function sendReply(
  msg: Responder,
  data: Uint8Array,
  replyHeaders: MsgHdrs | undefined,
  options: ReplyOptions,
): void {
  try {
    msg.respond(data, replyHeaders === undefined ? undefined : { headers: replyHeaders });
  } catch (error) {
    options.log.error({ err: error, subject: options.subject, bytes: data.byteLength }, "reply not sent");
  }
}
