import { JetStreamApiError } from "@nats-io/jetstream";
import {
  ClosedConnectionError,
  ConnectionError,
  DrainingConnectionError,
  NoRespondersError,
  RequestError,
  TimeoutError,
} from "@nats-io/transport-node";
import { ErrorCode, type WireError, WireErrorSchema } from "../../schemas/errors.ts";

/** A failure with a stable code and a message a user can act on. */
export class LoomError extends Error {
  override readonly name = "LoomError";
  readonly code: ErrorCode;
  readonly details: Record<string, unknown> | undefined;

  constructor(
    code: ErrorCode,
    message: string,
    options?: { cause?: unknown; details?: Record<string, unknown> },
  ) {
    super(message, { cause: options?.cause });
    this.code = code;
    this.details = options?.details;
  }

  static fromWire(wire: WireError): LoomError {
    return new LoomError(wire.code, wire.message, { details: wire.details });
  }

  toWire(): WireError {
    return this.details === undefined
      ? { code: this.code, message: this.message }
      : { code: this.code, message: this.message, details: this.details };
  }
}

/**
 * A LIMIT_EXCEEDED error for `what` (in words) being `value` where `limit` (the setting that
 * bounds it, e.g. `LOOM_MAX_STEPS`) allows at most `max`.
 */
export function limitExceeded(what: string, limit: string, value: number, max: number): LoomError {
  return new LoomError(ErrorCode.LIMIT_EXCEEDED, `${what} is ${value}, over the limit of ${max} (${limit})`, {
    details: { limit, value, max },
  });
}

/** Bytes of a value as JSON (UTF-8). */
export function jsonBytes(value: unknown): number {
  return Buffer.byteLength(JSON.stringify(value) ?? "");
}

/** Any throw as a wire error; an unknown failure becomes INTERNAL without leaking its internals. */
export function toWireError(error: unknown): WireError {
  if (error instanceof LoomError) return error.toWire();
  const parsed = WireErrorSchema.safeParse(error);
  if (parsed.success) return parsed.data;
  if (isBrokerFailure(error)) {
    return {
      code: ErrorCode.BROKER_UNAVAILABLE,
      message: "NATS did not answer in time (restarting or unreachable); try again",
    };
  }
  return { code: ErrorCode.INTERNAL, message: "internal error; the service log has the details" };
}

/**
 * JetStream API error codes that a cluster answers while it heals: no quorum or leader yet
 * (10008 "JetStream system temporarily unavailable", 10009 "cluster can not handle request"),
 * a stream or consumer offline or not yet assigned after a restart (10118, 10119, 10007), no
 * peers to place a replicated stream on while the nodes of a starting cluster still find each
 * other (10005), a change of members under way (10202).
 */
const TRANSIENT_JETSTREAM_CODES: ReadonlySet<number> = new Set([
  10005, 10007, 10008, 10009, 10118, 10119, 10202,
]);

/**
 * A failure of the broker rather than of the work: a request or JetStream call that timed out,
 * found nobody to answer it, found the connection down or reconnecting, or met a cluster between
 * leaders. Such a failure says nothing about the request itself, so the same request is worth
 * another try once the broker is back.
 */
export function isBrokerFailure(error: unknown): boolean {
  for (let current = error; current instanceof Error; current = current.cause) {
    if (
      current instanceof TimeoutError ||
      current instanceof ConnectionError ||
      current instanceof ClosedConnectionError ||
      current instanceof DrainingConnectionError ||
      current instanceof RequestError ||
      // Also the cause of "jetstream is not enabled" while a restarting server's JetStream starts.
      current instanceof NoRespondersError ||
      (current instanceof JetStreamApiError &&
        (current.status === 503 || TRANSIENT_JETSTREAM_CODES.has(current.code)))
    ) {
      return true;
    }
  }
  return false;
}

/** Renders zod issues as `path: message` lines for error messages that point at the offending field. */
export function describeIssues(issues: ReadonlyArray<{ path: PropertyKey[]; message: string }>): string {
  return issues
    .map((issue) => {
      const path = issue.path.map(String).join(".");
      return path === "" ? issue.message : `${path}: ${issue.message}`;
    })
    .join("; ");
}
