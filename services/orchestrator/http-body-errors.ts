import type { ErrorRequestHandler } from "express";
import { ErrorCode } from "../../schemas/errors.ts";
import type { Logger } from "../kit/index.ts";

/** An error raised on the HTTP edge before a handler answered (the body parser's, say), as the caller sees it. */
export interface HttpFailure {
  status: number;
  code: ErrorCode;
  message: string;
}

/** JSON-RPC's code for each failure: -32700 a body that is not JSON, -32600 one refused, -32603 ours. */
function jsonRpcCodeOf(failure: HttpFailure): number {
  if (failure.status >= 500) return -32603;
  return failure.code === ErrorCode.PAYLOAD_TOO_LARGE ? -32600 : -32700;
}

/**
 * What an error thrown on the HTTP edge means to the caller: a body over the route's limit is
 * PAYLOAD_TOO_LARGE (413), another body the parser refused INVALID_MESSAGE (its 4xx), anything else
 * INTERNAL (500). Never the error's stack or the server's paths.
 */
function httpFailureOf(error: unknown): HttpFailure {
  const { status, type, limit } = (typeof error === "object" && error !== null ? error : {}) as {
    status?: unknown;
    type?: unknown;
    limit?: unknown;
  };
  if (status === 413 || type === "entity.too.large") {
    const most = typeof limit === "number" ? ` of ${limit} bytes` : "";
    return { status: 413, code: ErrorCode.PAYLOAD_TOO_LARGE, message: `request body over the limit${most}` };
  }
  if (typeof status === "number" && status >= 400 && status < 500) {
    const message =
      type === "entity.parse.failed" ? "request body is not valid JSON" : "request body refused";
    return { status, code: ErrorCode.INVALID_MESSAGE, message };
  }
  return { status: 500, code: ErrorCode.INTERNAL, message: "internal error" };
}

/** A failure as a JSON-RPC error response (A2A JSON-RPC, the MCP gateway); `data.reason` is the code. */
export function jsonRpcFailure(failure: HttpFailure): object {
  return {
    jsonrpc: "2.0",
    id: null,
    error: { code: jsonRpcCodeOf(failure), message: failure.message, data: { reason: failure.code } },
  };
}

/**
 * An express error handler that answers in the route's own JSON form (`body`), so no error reaches
 * express's HTML page with its stack trace; a failure of the server's own is logged.
 */
export function httpErrorHandler(log: Logger, body: (failure: HttpFailure) => object): ErrorRequestHandler {
  return (error, req, res, next) => {
    if (res.headersSent) {
      next(error);
      return;
    }
    const failure = httpFailureOf(error);
    if (failure.status >= 500) log.error({ err: error, path: req.path }, "HTTP request failed");
    res.status(failure.status).json(body(failure));
  };
}
