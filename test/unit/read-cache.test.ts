import { describe, expect, it } from "vitest";
import { ReadCache } from "../../services/mcp-worker/read-cache.ts";

function clock(start = 1_000) {
  let now = start;
  return {
    now: () => now,
    advance: (ms: number) => {
      now += ms;
    },
  };
}

describe("read cache - TTL and bounds", () => {
  it("ttl - an answer is served until its TTL passes, then no longer", () => {
    const time = clock();
    const cache = new ReadCache<{ n: number }>({
      ttlMs: 30_000,
      maxEntries: 10,
      maxBytes: 10_000,
      now: time.now,
    });
    cache.set("a", { n: 1 }, "1.0.0");
    time.advance(29_999);
    expect(cache.get("a")).toEqual({ value: { n: 1 }, version: "1.0.0" });
    time.advance(1);
    expect(cache.get("a")).toBeUndefined();
    expect(cache.size).toBe(0);
    expect(cache.bytes).toBe(0);
  });

  it("ttl - storing an answer again restarts its TTL and replaces its version", () => {
    const time = clock();
    const cache = new ReadCache<string>({ ttlMs: 1_000, maxEntries: 10, maxBytes: 10_000, now: time.now });
    cache.set("a", "old", "1.0.0");
    time.advance(900);
    cache.set("a", "new", "2.0.0");
    time.advance(900);
    expect(cache.get("a")).toEqual({ value: "new", version: "2.0.0" });
    expect(cache.size).toBe(1);
  });

  it("bounds - past max entries the least recently used answer goes first", () => {
    const cache = new ReadCache<number>({ ttlMs: 60_000, maxEntries: 2, maxBytes: 10_000 });
    cache.set("a", 1, "v");
    cache.set("b", 2, "v");
    expect(cache.get("a")?.value).toBe(1); // a is now more recent than b
    cache.set("c", 3, "v");
    expect(cache.get("b")).toBeUndefined();
    expect(cache.get("a")?.value).toBe(1);
    expect(cache.get("c")?.value).toBe(3);
    expect(cache.size).toBe(2);
  });

  it("bounds - past max bytes old answers go until the new one fits", () => {
    const cache = new ReadCache<string>({ ttlMs: 60_000, maxEntries: 100, maxBytes: 25 });
    cache.set("a", "x".repeat(8), "v"); // 10 bytes of JSON
    cache.set("b", "y".repeat(8), "v");
    expect(cache.bytes).toBe(20);
    cache.set("c", "z".repeat(8), "v");
    expect(cache.get("a")).toBeUndefined();
    expect(cache.bytes).toBe(20);
    expect(cache.size).toBe(2);
  });

  it("bounds - an answer larger than the whole budget is not kept, and evicts nothing", () => {
    const cache = new ReadCache<string>({ ttlMs: 60_000, maxEntries: 100, maxBytes: 25 });
    cache.set("a", "small", "v");
    cache.set("huge", "h".repeat(100), "v");
    expect(cache.get("huge")).toBeUndefined();
    expect(cache.get("a")?.value).toBe("small");
  });

  it("isolation - changing an answer a caller got does not change what the next caller gets", () => {
    const cache = new ReadCache<{ email: string }>({ ttlMs: 60_000, maxEntries: 10, maxBytes: 10_000 });
    const original = { email: "ada@example.com" };
    cache.set("a", original, "v");
    original.email = "changed-after-set";
    const first = cache.get("a");
    if (first === undefined) throw new Error("expected a hit");
    first.value.email = "[masked]";
    expect(cache.get("a")?.value).toEqual({ email: "ada@example.com" });
  });
});
