import { describe, expect, it } from "vitest";
import type { SpanRecord } from "../../schemas/telemetry.ts";
import { drawWaterfall } from "../../services/cli/waterfall.ts";

const TRACE = "0af7651916cd43dd8448eb211c80319c";
function span(
  spanId: string,
  parentSpanId: string | undefined,
  name: string,
  startMs: number,
  durationMs: number,
) {
  return {
    traceId: TRACE,
    spanId: spanId.padStart(16, "0"),
    ...(parentSpanId === undefined ? {} : { parentSpanId: parentSpanId.padStart(16, "0") }),
    name,
    kind: "internal",
    service: name.startsWith("tools") ? "mcp-worker" : "orchestrator",
    startMs,
    durationMs,
    status: name.includes("fail") ? "error" : "unset",
    attributes: {},
    links: [],
  } satisfies SpanRecord;
}

describe("cli - runs trace waterfall", () => {
  it("waterfall - children sit under their parent in start order, bars on one timeline", () => {
    const drawn = drawWaterfall([
      span("3", "1", "step b", 60, 40),
      span("1", undefined, "run hello", 0, 100),
      span("2", "1", "step a", 0, 50),
      span("4", "2", "tools/call fail", 10, 30),
    ]).split("\n");
    expect(drawn).toHaveLength(5);
    expect(drawn[1]).toMatch(/^run hello\s+orchestrator\s+100\s{2}█{40}$/);
    expect(drawn[2]).toMatch(/^ {2}step a\s+orchestrator\s+50\.0\s{2}█{20}$/);
    expect(drawn[3]).toMatch(/^ {4}! tools\/call fail\s+mcp-worker\s+30\.0\s{2} {4}█{12}$/);
    expect(drawn[4]).toMatch(/^ {2}step b\s+orchestrator\s+40\.0\s{2} {24}█{16}$/);
  });

  it("waterfall - a span whose parent was not published starts a tree of its own", () => {
    const drawn = drawWaterfall([span("5", "9", "tools/call get_time", 0, 1)]);
    expect(drawn.split("\n")[1]).toMatch(/^tools\/call get_time/);
  });
});
