import { describe, expect, it } from "vitest";
import { TaskState } from "../../schemas/a2a.ts";
import { progressBar, statusLine } from "../../services/cli/render.ts";
import { progressText } from "../../services/orchestrator/task-progress.ts";

describe("progress - how a step's MCP progress reads", () => {
  it("progress - the bar fills with the share done and names the step and the server's message", () => {
    expect(progressBar("slow", { progress: 2, total: 4, message: "halfway" })).toBe(
      "[#####-----]  50% step slow: halfway",
    );
    expect(progressBar("slow", { progress: 0, total: 3 })).toBe("[----------]   0% step slow");
    expect(progressBar("slow", { progress: 3, total: 3 })).toBe("[##########] 100% step slow");
  });

  it("progress - without a total the bar cannot fill, so only the count shows", () => {
    expect(progressBar("crawl", { progress: 17 })).toBe("[??????????] 17 step crawl");
  });

  it("progress - a report beyond its total is shown full, not overflowing", () => {
    expect(progressBar("slow", { progress: 5, total: 4 })).toBe("[##########] 100% step slow");
  });

  it("progress - loom submit --watch prints a progress event as a bar line", () => {
    const line = statusLine({
      statusUpdate: {
        taskId: "run-1",
        contextId: "ctx-1",
        status: { state: TaskState.WORKING, timestamp: "2026-01-02T03:04:05.678Z" },
        metadata: { stepId: "slow", progress: { progress: 1, total: 4 } },
      },
    });
    expect(line).toBe("03:04:05  working        [###-------]  25% step slow");
  });

  it("progress - the run event's text says the step and the share done", () => {
    expect(progressText("slow", { progress: 1, total: 4, message: "warming up" })).toBe(
      "step slow: 25% warming up",
    );
    expect(progressText("crawl", { progress: 17 })).toBe("step crawl: 17");
  });
});
