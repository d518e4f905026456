import { describe, expect, it } from "vitest";
import { CallHistory } from "../../services/acp-policy/anomalies.ts";

const HOUR = 60 * 60_000;

describe("anomalies - a principal's call history, counted per second", () => {
  it("anomalies - counts the calls in the last window and in the hour", () => {
    const calls = new CallHistory();
    const start = 1_000_000_000_000;
    calls.add(start);
    calls.add(start + 1_000);
    calls.add(start + 1_200);
    calls.add(start + 20_000);
    expect(calls.total).toBe(4);
    expect(calls.within(start + 20_000, 10_000)).toBe(1);
    expect(calls.within(start + 20_000, 30_000)).toBe(4);
    expect(calls.since(start + 20_000)).toBe(start);
  });

  it("anomalies - forgets calls older than an hour, however many there were", () => {
    const calls = new CallHistory();
    const start = 1_000_000_000_000;
    for (let second = 0; second < 5_000; second++) calls.add(start + second * 1_000);
    const now = start + 4_999 * 1_000;
    expect(calls.total).toBe(3_600);
    expect(calls.since(now)).toBe(now - HOUR + 1_000);
    expect(calls.within(now, 10_000)).toBe(10);
    calls.add(now + HOUR);
    expect(calls.total).toBe(1);
    expect(calls.within(now + HOUR, 10_000)).toBe(1);
  });
});
