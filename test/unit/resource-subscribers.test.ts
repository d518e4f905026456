import { describe, expect, it } from "vitest";
import { ResourceSubscribers } from "../../services/mcp-worker/resource-subscriptions.ts";

describe("resource subscribers - one upstream subscription per resource, held by every session that asked", () => {
  it("resource subscribers - the server is told to unsubscribe only when the last holder leaves", () => {
    const subscribers = new ResourceSubscribers();
    expect(subscribers.has("everything", "demo://a")).toBe(false);
    subscribers.add("everything", "demo://a", "mcp-1");
    subscribers.add("everything", "demo://a", "mcp-2");
    subscribers.add("everything", "demo://b", "mcp-1");
    subscribers.add("every", "demo://c", "mcp-1");
    expect(subscribers.uris("everything").sort()).toEqual(["demo://a", "demo://b"]);
    expect(subscribers.has("everything", "demo://a")).toBe(true);
    expect(subscribers.has("other", "demo://a")).toBe(false);
    expect(subscribers.removeLast("everything", "demo://a", "mcp-3")).toBe(false);
    expect(subscribers.removeLast("everything", "demo://a", "mcp-1")).toBe(false);
    expect(subscribers.has("everything", "demo://a")).toBe(true);
    expect(subscribers.removeLast("everything", "demo://a", "mcp-2")).toBe(true);
    expect(subscribers.has("everything", "demo://a")).toBe(false);
    expect(subscribers.removeLast("everything", "demo://a", "mcp-2")).toBe(false);
  });
});
