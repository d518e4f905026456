import { setTimeout as sleep } from "node:timers/promises";
import { describe, expect, it } from "vitest";
import { PausableDeadline } from "../../services/kit/pausable-deadline.ts";

describe("kit - a deadline that stops counting while paused", () => {
  it("deadline - fires after its time when never paused, with its reason", async () => {
    const deadline = new PausableDeadline(30, () => new Error("too slow"));
    await sleep(80);
    expect(deadline.signal.aborted).toBe(true);
    expect(deadline.signal.reason).toEqual(new Error("too slow"));
  });

  it("deadline - time spent paused does not count, and nested pauses need every resume", async () => {
    const deadline = new PausableDeadline(60, () => "late");
    await sleep(20);
    deadline.pause();
    deadline.pause();
    await sleep(100);
    deadline.resume();
    await sleep(20);
    expect(deadline.signal.aborted).toBe(false);
    deadline.resume();
    await sleep(10);
    expect(deadline.signal.aborted).toBe(false);
    await sleep(60);
    expect(deadline.signal.aborted).toBe(true);
  });

  it("deadline - a cleared deadline never fires", async () => {
    const deadline = new PausableDeadline(20, () => "late");
    deadline.clear();
    await sleep(50);
    expect(deadline.signal.aborted).toBe(false);
  });
});
