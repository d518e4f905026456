import type { NextFunction, Request, RequestHandler, Response } from "express";
import { prettifyError, type z } from "zod";
import type { ConsoleError } from "../../../schemas/console.ts";
import { ErrorCode } from "../../../schemas/errors.ts";
import { type Logger, LoomError, toWireError } from "../../kit/index.ts";
import { bearerToken } from "../a2a/bearer-user.ts";

/** The HTTP status of a console API answer that failed with this error code. */
export function statusOf(code: string): number {
  switch (code) {
    case ErrorCode.UNAUTHENTICATED:
      return 401;
    // A run the caller may not see answers as one that does not exist (RUN_NOT_FOUND), so that no
    // one learns a run exists; the console says 403 for both, never 404 for one and 403 the other.
    case ErrorCode.POLICY_DENIED:
    case ErrorCode.RUN_NOT_FOUND:
      return 403;
    case ErrorCode.UNKNOWN_WORKFLOW:
      return 404;
    case ErrorCode.RUN_NOT_WAITING:
      return 409;
    case ErrorCode.INVALID_INPUT:
    case ErrorCode.INVALID_MESSAGE:
    case ErrorCode.LIMIT_EXCEEDED:
      return 400;
    case ErrorCode.PAYLOAD_TOO_LARGE:
      return 413;
    case ErrorCode.TIMEOUT:
    case ErrorCode.BROKER_UNAVAILABLE:
      return 503;
    default:
      return 500;
  }
}

/** Answers a failure as `{error: {code, message}}` with its status; a 401 names the bearer scheme. */
export function sendError(res: Response, error: unknown, log: Logger): void {
  const { code, message } = toWireError(error);
  const status = statusOf(code);
  if (status >= 500) log.error({ err: error, code }, "console request failed");
  if (status === 401) res.set("WWW-Authenticate", 'Bearer realm="loom"');
  res.status(status).json({ error: { code, message } } satisfies ConsoleError);
}

/** The caller's `Authorization` value to forward to acp-policy, which verifies it. */
export function authorizationOf(req: Request): string | undefined {
  const token = bearerToken(req);
  return token === undefined ? undefined : `Bearer ${token}`;
}

/** Refuses a console API request that carries no bearer token, before any handler runs. */
export function requireBearer(log: Logger): RequestHandler {
  return (req, res, next) => {
    if (bearerToken(req) !== undefined) {
      next();
      return;
    }
    sendError(
      res,
      new LoomError(
        ErrorCode.UNAUTHENTICATED,
        "sign in: a bearer token is required (Authorization: Bearer …)",
      ),
      log,
    );
  };
}

/** An async handler whose failures become typed error answers (or end a stream already open). */
export function handler(
  log: Logger,
  handle: (req: Request, res: Response) => Promise<void>,
): (req: Request, res: Response, next: NextFunction) => void {
  return (req, res) => {
    handle(req, res).catch((error: unknown) => {
      if (res.headersSent) {
        log.warn({ err: error }, "console stream ended by an error");
        res.end();
        return;
      }
      sendError(res, error, log);
    });
  };
}

/** Parses a request's body or query with its schema: INVALID_INPUT naming what is wrong. */
export function parse<Schema extends z.ZodType>(
  schema: Schema,
  value: unknown,
  what: string,
): z.infer<Schema> {
  const parsed = schema.safeParse(value);
  if (!parsed.success) {
    throw new LoomError(ErrorCode.INVALID_INPUT, `${what}: ${prettifyError(parsed.error)}`);
  }
  return parsed.data;
}
