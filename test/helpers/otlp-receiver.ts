import { createServer } from "node:http";
import type { AddressInfo } from "node:net";

/** OTLP's SpanKind numbers (one more than the OpenTelemetry API's `SpanKind`). */
export const OtlpSpanKind = { INTERNAL: 1, SERVER: 2, CLIENT: 3, PRODUCER: 4, CONSUMER: 5 } as const;

/** One span as an OTLP/HTTP JSON export carries it, with its resource's `service.name`. */
export interface ReceivedSpan {
  service: string;
  traceId: string;
  spanId: string;
  parentSpanId: string | undefined;
  name: string;
  /** OTLP SpanKind: 1 internal, 2 server, 3 client, 4 producer, 5 consumer. */
  kind: number;
  attributes: Record<string, string | number | boolean>;
  statusCode: number;
  links: { traceId: string; spanId: string }[];
}

/** A small OTLP/HTTP receiver on a free port: what the services export, decoded. */
export interface OtlpReceiver extends AsyncDisposable {
  /** `http://127.0.0.1:<port>`, for `OTEL_EXPORTER_OTLP_ENDPOINT`. */
  endpoint: string;
  spans: ReceivedSpan[];
  /** Requests it could not decode (a protobuf export, say), so a test can fail on them. */
  rejected: string[];
}

interface OtlpValue {
  stringValue?: string;
  intValue?: string | number;
  doubleValue?: number;
  boolValue?: boolean;
}
interface OtlpAttribute {
  key: string;
  value: OtlpValue;
}
interface OtlpSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind: number;
  attributes?: OtlpAttribute[];
  status?: { code?: number };
  links?: { traceId: string; spanId: string }[];
}
/** An OTLP/JSON `ExportTraceServiceRequest` (or `TracesData`), as far as the tests read it. */
export interface OtlpExport {
  resourceSpans?: {
    resource?: { attributes?: OtlpAttribute[] };
    scopeSpans?: { spans?: OtlpSpan[] }[];
  }[];
}

function plain(attributes: OtlpAttribute[] | undefined): Record<string, string | number | boolean> {
  const result: Record<string, string | number | boolean> = {};
  for (const { key, value } of attributes ?? []) {
    const scalar = value.stringValue ?? value.boolValue ?? value.doubleValue ?? value.intValue;
    if (scalar !== undefined)
      result[key] = typeof scalar === "string" && "intValue" in value ? Number(scalar) : scalar;
  }
  return result;
}

/** The spans of an OTLP JSON export (what Jaeger's API v3 answers with, too), each with its service. */
export function decodeOtlpSpans(body: OtlpExport): ReceivedSpan[] {
  const spans: ReceivedSpan[] = [];
  for (const resourceSpans of body.resourceSpans ?? []) {
    const service = String(plain(resourceSpans.resource?.attributes)["service.name"] ?? "");
    for (const scope of resourceSpans.scopeSpans ?? []) {
      for (const span of scope.spans ?? []) {
        spans.push({
          service,
          traceId: span.traceId,
          spanId: span.spanId,
          parentSpanId: span.parentSpanId || undefined,
          name: span.name,
          kind: span.kind,
          attributes: plain(span.attributes),
          statusCode: span.status?.code ?? 0,
          links: span.links ?? [],
        });
      }
    }
  }
  return spans;
}

/** Starts the receiver; `POST /v1/traces` with `application/json` bodies is all it understands. */
export async function startOtlpReceiver(): Promise<OtlpReceiver> {
  const spans: ReceivedSpan[] = [];
  const rejected: string[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("end", () => {
      const type = req.headers["content-type"] ?? "";
      if (req.method !== "POST" || req.url !== "/v1/traces" || !type.includes("json")) {
        rejected.push(`${req.method} ${req.url} ${type}`);
        res.writeHead(415).end();
        return;
      }
      spans.push(...decodeOtlpSpans(JSON.parse(Buffer.concat(chunks).toString("utf8")) as OtlpExport));
      res.writeHead(200, { "content-type": "application/json" }).end("{}");
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    spans,
    rejected,
    async [Symbol.asyncDispose]() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/**
 * The trace as an indented tree, one `service: name` per line, children in start order of their
 * arrival; what a person reads in Jaeger's trace view.
 */
export function traceTree(spans: readonly ReceivedSpan[], traceId: string): string {
  const mine = spans.filter((span) => span.traceId === traceId);
  const ids = new Set(mine.map((span) => span.spanId));
  const lines: string[] = [];
  const visit = (parent: string | undefined, depth: number) => {
    const children = mine
      .filter((span) =>
        parent === undefined ? !ids.has(span.parentSpanId ?? "") : span.parentSpanId === parent,
      )
      .sort((a, b) => a.name.localeCompare(b.name) || a.service.localeCompare(b.service));
    for (const child of children) {
      lines.push(`${"  ".repeat(depth)}${child.service}: ${child.name}`);
      visit(child.spanId, depth + 1);
    }
  };
  visit(undefined, 0);
  return lines.join("\n");
}
