import { afterAll, describe, expect, it } from "vitest";
import {
  contextFromFields,
  Sampler,
  setupTelemetry,
  TelemetryConfigSchema,
  TracesExporter,
  traceContextFields,
  withSpan,
} from "../../services/kit/index.ts";

const telemetry = setupTelemetry({
  service: "sampling-test",
  config: TelemetryConfigSchema.parse({
    OTEL_TRACES_EXPORTER: TracesExporter.NONE,
    OTEL_TRACES_SAMPLER: Sampler.PARENT_BASED_ALWAYS_ON,
    LOOM_TRACE_STREAM: "false",
  }),
});
afterAll(() => telemetry.shutdown());

const TRACE_ID = "0af7651916cd43dd8448eb211c80319c";
const PARENT_SPAN_ID = "b7ad6b7169203331";
const remoteParent = (flags: "00" | "01") =>
  contextFromFields({ traceparent: `00-${TRACE_ID}-${PARENT_SPAN_ID}-${flags}` });

describe("telemetry - spans only when sampled", () => {
  it("telemetry - under a sampled parent a span is made and recorded, and its context travels on", async () => {
    await withSpan("step", { parent: remoteParent("01") }, async (span) => {
      expect(span.isRecording()).toBe(true);
      expect(span.spanContext().traceId).toBe(TRACE_ID);
      expect(span.spanContext().spanId).not.toBe(PARENT_SPAN_ID);
      expect(traceContextFields().traceparent).toBe(`00-${TRACE_ID}-${span.spanContext().spanId}-01`);
    });
  });

  it("telemetry - under an unsampled parent no span is made, nested or not, and the trace id still travels", async () => {
    await withSpan("step", { parent: remoteParent("00") }, async (outer) => {
      expect(outer.isRecording()).toBe(false);
      expect(outer.spanContext().spanId).toBe(PARENT_SPAN_ID);
      await withSpan("inner", {}, async (inner) => {
        expect(inner.isRecording()).toBe(false);
        expect(inner.spanContext().spanId).toBe(PARENT_SPAN_ID);
        expect(traceContextFields().traceparent).toBe(`00-${TRACE_ID}-${PARENT_SPAN_ID}-00`);
      });
    });
  });

  it("telemetry - a root span is still sampled by the sampler, and a failure inside an unsampled one still throws", async () => {
    await withSpan("root", {}, async (span) => expect(span.isRecording()).toBe(true));
    await expect(
      withSpan("step", { parent: remoteParent("00") }, async () => {
        throw new Error("boom");
      }),
    ).rejects.toThrow("boom");
  });
});
