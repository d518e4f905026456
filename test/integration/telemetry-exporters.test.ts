import { execFile } from "node:child_process";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { REPO_ROOT } from "../helpers/loom.ts";
import { type OtlpReceiver, startOtlpReceiver } from "../helpers/otlp-receiver.ts";

const run = promisify(execFile);

/**
 * A process that sets telemetry up from its environment, as a service does, makes one span, prints
 * its trace id and shuts telemetry down. Each case needs its own process: a tracer provider is
 * registered once per process.
 */
const SCRIPT = `
import { loadConfig, setupTelemetry, TelemetryConfigSchema, withSpan } from ${JSON.stringify(join(REPO_ROOT, "services/kit/index.ts"))};
const telemetry = setupTelemetry({ service: "exporter-test", config: loadConfig(TelemetryConfigSchema) });
await withSpan("work", {}, async (span) => console.log(span.spanContext().traceId));
await telemetry.shutdown();
`;

async function spanIn(env: Record<string, string>): Promise<string> {
  const { stdout } = await run(process.execPath, ["--input-type=module", "-e", SCRIPT], {
    env: { PATH: process.env.PATH ?? "", LOOM_TRACE_STREAM: "false", ...env },
  });
  return stdout.trim();
}

describe("telemetry - exporters and sampling chosen by the standard OTEL_* variables", () => {
  let otlp: OtlpReceiver;
  beforeAll(async () => {
    otlp = await startOtlpReceiver();
  });
  afterAll(async () => {
    await otlp?.[Symbol.asyncDispose]();
  });

  it("telemetry - otlp (the default) sends JSON to <endpoint>/v1/traces with service.name", async () => {
    const traceId = await spanIn({
      OTEL_EXPORTER_OTLP_ENDPOINT: otlp.endpoint,
      OTEL_SERVICE_NAME: "replica-7",
    });
    expect(otlp.spans.filter((span) => span.traceId === traceId)).toMatchObject([
      { service: "replica-7", name: "work" },
    ]);
  });

  it("telemetry - always_off records nothing but still makes trace ids to propagate", async () => {
    const before = otlp.spans.length;
    const traceId = await spanIn({
      OTEL_EXPORTER_OTLP_ENDPOINT: otlp.endpoint,
      OTEL_TRACES_SAMPLER: "always_off",
    });
    expect(traceId).toMatch(/^[0-9a-f]{32}$/);
    expect(otlp.spans.length).toBe(before);
  });

  it("telemetry - jaeger posts Thrift to the Jaeger collector endpoint", async () => {
    const received: { type: string | undefined; bytes: number }[] = [];
    const collector = createServer((req, res) => {
      let bytes = 0;
      req.on("data", (chunk: Buffer) => {
        bytes += chunk.length;
      });
      req.on("end", () => {
        received.push({ type: req.headers["content-type"], bytes });
        res.writeHead(202).end();
      });
    });
    await new Promise<void>((resolve) => collector.listen(0, "127.0.0.1", resolve));
    try {
      const { port } = collector.address() as AddressInfo;
      await spanIn({
        OTEL_TRACES_EXPORTER: "jaeger",
        OTEL_EXPORTER_JAEGER_ENDPOINT: `http://127.0.0.1:${port}/api/traces`,
      });
      expect(received.length).toBeGreaterThan(0);
      expect(received[0]?.type).toBe("application/x-thrift");
      expect(received[0]?.bytes).toBeGreaterThan(0);
    } finally {
      collector.close();
    }
  });

  it("telemetry - an unknown exporter stops the process with the variable's name", async () => {
    await expect(spanIn({ OTEL_TRACES_EXPORTER: "zipkin" })).rejects.toThrow(/OTEL_TRACES_EXPORTER/);
  });
});
