import { trace } from "@opentelemetry/api";
import { type DestinationStream, type Logger, pino } from "pino";

export type { Logger } from "pino";

export const LogFormat = { JSON: "json", PRETTY: "pretty" } as const;
export type LogFormat = (typeof LogFormat)[keyof typeof LogFormat];

/**
 * Keys whose values never reach a log line: credentials (tokens, grants, keys) and the personal
 * fields policies mask. Pino matches exact paths, so each key is listed at the top level and one
 * and two levels down, where logged objects put them.
 */
const SECRET_KEYS = [
  "authorization",
  "Authorization",
  "token",
  "grant",
  "password",
  "secret",
  "apiKey",
  "api_key",
  "X-Api-Key",
  "email",
  "ssn",
  "phone",
];
export const REDACTED_PATHS = SECRET_KEYS.flatMap((key) => [key, `*.${key}`, `*.*.${key}`]);
export const REDACTED = "[redacted]";

export interface LoggerOptions {
  service: string;
  level: string;
  format?: LogFormat;
  /** Where lines go; standard output by default (tests pass a stream to read them back). */
  destination?: DestinationStream;
}

/** A logger whose every line carries the active span's `trace_id` and `span_id`. */
export function createLogger(options: LoggerOptions): Logger {
  const settings = {
    name: options.service,
    level: options.level,
    base: { service: options.service },
    redact: { paths: REDACTED_PATHS, censor: REDACTED },
    mixin() {
      const span = trace.getActiveSpan();
      if (span === undefined) return {};
      const { traceId, spanId } = span.spanContext();
      return { trace_id: traceId, span_id: spanId };
    },
  };
  if (options.destination !== undefined) return pino(settings, options.destination);
  if (options.format === LogFormat.PRETTY && prettyAvailable()) {
    return pino({
      ...settings,
      transport: { target: "pino-pretty", options: { colorize: false, ignore: "pid,hostname" } },
    });
  }
  return pino(settings);
}

/** pino-pretty is a dev dependency: a production install falls back to JSON. */
function prettyAvailable(): boolean {
  try {
    import.meta.resolve("pino-pretty");
    return true;
  } catch {
    return false;
  }
}
