import {
  findJaeger,
  JAEGER_INSTALL_HINT,
  type JaegerListener,
  JaegerListeners,
  type JaegerPorts,
  launchJaeger,
} from "../../services/cli/jaeger.ts";
import { stopProcess } from "../../services/cli/nats-server.ts";
import { killOnExit } from "./nats-server.ts";
import { decodeOtlpSpans, type OtlpExport, type ReceivedSpan } from "./otlp-receiver.ts";
import { freePort } from "./ports.ts";

/** A trace as Jaeger's web UI reads it (`GET /api/traces/<id>`). */
export interface UiTrace {
  traceID: string;
  spans: {
    spanID: string;
    operationName: string;
    processID: string;
    references: { refType: string; traceID: string; spanID: string }[];
    tags: { key: string; type: string; value: unknown }[];
  }[];
  processes: Record<string, { serviceName: string }>;
}

/** Reads traces back from a Jaeger's query APIs. */
export interface JaegerQuery {
  /** A trace as the API v3 returns it (OTLP JSON), decoded; empty while Jaeger has none of it. */
  spans(traceId: string): Promise<ReceivedSpan[]>;
  /** A trace as the web UI's API returns it; undefined while Jaeger has none of it. */
  uiTrace(traceId: string): Promise<UiTrace | undefined>;
}

/** A Jaeger all-in-one (default configuration, in-memory storage) on free ports. */
export interface Jaeger extends JaegerQuery, AsyncDisposable {
  /** For `OTEL_EXPORTER_OTLP_ENDPOINT`. */
  otlpEndpoint: string;
  /** For `OTEL_EXPORTER_JAEGER_ENDPOINT`. */
  thriftEndpoint: string;
  /** The web UI and query APIs. */
  uiUrl: string;
}

/** The query APIs of the Jaeger whose UI and API answer at `baseUrl`. */
export function jaegerQuery(baseUrl: string): JaegerQuery {
  /** The body of an answer; undefined for 404, which is how Jaeger says "no such trace". */
  const get = async (path: string): Promise<unknown> => {
    const response = await fetch(`${baseUrl}${path}`);
    if (response.status === 404) {
      await response.body?.cancel();
      return undefined;
    }
    if (!response.ok) throw new Error(`GET ${path}: ${response.status} ${await response.text()}`);
    return response.json();
  };
  return {
    async spans(traceId) {
      const body = (await get(`/api/v3/traces/${traceId}`)) as { result?: OtlpExport } | undefined;
      return decodeOtlpSpans(body?.result ?? {});
    },
    async uiTrace(traceId) {
      const body = (await get(`/api/traces/${traceId}`)) as { data?: UiTrace[] } | undefined;
      return body?.data?.[0];
    },
  };
}

/** The `jaeger` binary on PATH or in the Go bin folder; its absence fails the test, naming the fix. */
export function requireJaeger(): string {
  const binary = findJaeger(process.env);
  if (binary === undefined)
    throw new Error(`no jaeger binary on PATH or in the Go bin folder; ${JAEGER_INSTALL_HINT}`);
  return binary;
}

/**
 * Starts the `jaeger` binary found on PATH or in the Go bin folder with its default all-in-one
 * configuration, every port moved to a free one. No binary is a failure, not a skip: CI builds it.
 */
export async function startJaeger(): Promise<Jaeger> {
  const binary = requireJaeger();
  const ports = {} as JaegerPorts;
  for (const listener of Object.keys(JaegerListeners) as JaegerListener[]) ports[listener] = await freePort();
  const jaeger = await launchJaeger({ binary, ports, onSpawn: killOnExit });
  return {
    otlpEndpoint: jaeger.otlpEndpoint,
    thriftEndpoint: jaeger.thriftEndpoint,
    uiUrl: jaeger.uiUrl,
    ...jaegerQuery(`http://127.0.0.1:${jaeger.ports.queryHttp}`),
    [Symbol.asyncDispose]: () => stopProcess(jaeger.child),
  };
}
