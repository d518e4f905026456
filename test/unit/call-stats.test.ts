import { describe, expect, it } from "vitest";
import type { FeedbackRecord, ToolCallRecord } from "../../schemas/tool-calls.ts";
import {
  aggregateCallStats,
  latencyPercentiles,
  percentile,
} from "../../services/orchestrator/call-stats.ts";

const at = "2026-12-01T12:00:00.000Z";

function call(overrides: Partial<ToolCallRecord> = {}): ToolCallRecord {
  return {
    type: "call",
    server: "crm",
    target: "get_contact",
    kind: "tool",
    serverVersion: "1.0.0",
    outcome: "ok",
    latencyMs: 10,
    cached: false,
    timestamp: at,
    ...overrides,
  };
}

function feedback(overrides: Partial<FeedbackRecord> = {}): FeedbackRecord {
  return {
    type: "feedback",
    server: "crm",
    target: "get_contact",
    kind: "tool",
    serverVersion: "1.0.0",
    runId: "r-1",
    stepId: "contact",
    verdict: "ok",
    by: "ann",
    timestamp: at,
    ...overrides,
  };
}

describe("tool stats - percentiles", () => {
  it("percentiles - nearest rank over 1..100 gives the value at that rank", () => {
    const sorted = Array.from({ length: 100 }, (_, index) => index + 1);
    expect(percentile(sorted, 50)).toBe(50);
    expect(percentile(sorted, 95)).toBe(95);
    expect(percentile(sorted, 99)).toBe(99);
    expect(percentile(sorted, 100)).toBe(100);
  });

  it("percentiles - one value is every percentile; none is no percentile", () => {
    expect(latencyPercentiles([7])).toEqual({ p50: 7, p95: 7, p99: 7 });
    expect(latencyPercentiles([])).toBeUndefined();
  });

  it("percentiles - unsorted input is sorted first and a slow tail shows in p95 and p99 only", () => {
    const latencies = [...Array.from({ length: 18 }, () => 5), 900, 1000].reverse();
    expect(latencyPercentiles(latencies)).toEqual({ p50: 5, p95: 900, p99: 1000 });
  });

  it("percentiles - small samples round the rank up (p50 of 4 values is the 2nd)", () => {
    expect(percentile([1, 2, 3, 4], 50)).toBe(2);
    expect(percentile([1, 2, 3, 4], 95)).toBe(4);
  });
});

describe("tool stats - aggregation per tool and server version", () => {
  it("aggregation - separates server versions so an A/B rollout can be compared", () => {
    const rows = aggregateCallStats([
      call({ serverVersion: "1.0.0", latencyMs: 10 }),
      call({ serverVersion: "1.0.0", latencyMs: 30 }),
      call({ serverVersion: "2.0.0-beta", latencyMs: 50, outcome: "TOOL_ERROR" }),
      call({ serverVersion: "2.0.0-beta", latencyMs: 70 }),
    ]);
    expect(rows.map((row) => [row.serverVersion, row.calls, row.errors, row.errorRate])).toEqual([
      ["1.0.0", 2, 0, 0],
      ["2.0.0-beta", 2, 1, 0.5],
    ]);
    expect(rows[0]?.latencyMs).toEqual({ p50: 10, p95: 30, p99: 30 });
    expect(rows[1]?.latencyMs).toEqual({ p50: 50, p95: 70, p99: 70 });
  });

  it("aggregation - cached calls count as calls but not in latency", () => {
    const [row] = aggregateCallStats([
      call({ latencyMs: 40 }),
      call({ latencyMs: 0.01, cached: true }),
      call({ latencyMs: 0.02, cached: true }),
      call({ latencyMs: 0.01, cached: true }),
    ]);
    expect(row).toMatchObject({ calls: 4, cached: 3, cachedShare: 0.75 });
    expect(row?.latencyMs).toEqual({ p50: 40, p95: 40, p99: 40 });
  });

  it("aggregation - only cached calls leave latency out", () => {
    const [row] = aggregateCallStats([call({ cached: true })]);
    expect(row?.latencyMs).toBeUndefined();
  });

  it("aggregation - feedback counts against the version of the step it judges", () => {
    const rows = aggregateCallStats([
      call({ serverVersion: "1.0.0" }),
      call({ serverVersion: "2.0.0" }),
      feedback({ serverVersion: "1.0.0", runId: "r-1", verdict: "ok" }),
      feedback({ serverVersion: "2.0.0", runId: "r-2", verdict: "bad" }),
      feedback({ serverVersion: "2.0.0", runId: "r-3", verdict: "bad" }),
    ]);
    expect(rows.map((row) => [row.serverVersion, row.feedback])).toEqual([
      ["1.0.0", { ok: 1, bad: 0 }],
      ["2.0.0", { ok: 0, bad: 2 }],
    ]);
  });

  it("aggregation - a person's later verdict on a step replaces their earlier one", () => {
    const [row] = aggregateCallStats([
      call(),
      feedback({ by: "ann", verdict: "bad" }),
      feedback({ by: "ann", verdict: "ok" }),
      feedback({ by: "root", verdict: "bad" }),
    ]);
    expect(row?.feedback).toEqual({ ok: 1, bad: 1 });
  });

  it("aggregation - tools, resources and prompts of one server are separate rows, sorted", () => {
    const rows = aggregateCallStats([
      call({ target: "summarize", kind: "prompt" }),
      call({ server: "time", target: "get_time" }),
      call({ target: "crm://contacts/c-1", kind: "resource" }),
      call(),
    ]);
    expect(rows.map((row) => `${row.server}.${row.target} ${row.kind}`)).toEqual([
      "crm.crm://contacts/c-1 resource",
      "crm.get_contact tool",
      "crm.summarize prompt",
      "time.get_time tool",
    ]);
  });

  it("aggregation - feedback for a call outside the window still shows, with zero calls", () => {
    const [row] = aggregateCallStats([feedback()]);
    expect(row).toMatchObject({ calls: 0, errorRate: 0, cachedShare: 0, feedback: { ok: 1, bad: 0 } });
    expect(row?.latencyMs).toBeUndefined();
  });

  it("aggregation - no records, no rows", () => {
    expect(aggregateCallStats([])).toEqual([]);
  });
});
