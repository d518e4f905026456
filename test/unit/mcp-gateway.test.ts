import type { CallToolResult } from "@modelcontextprotocol/sdk/types.js";
import { describe, expect, it } from "vitest";
import { type Task, TaskState } from "../../schemas/a2a.ts";
import { toolResultToArtifact } from "../../services/mcp-worker/artifacts.ts";
import { readResultOf, toolResultOf } from "../../services/orchestrator/mcp-gateway/mcp-results.ts";

function taskOf(artifacts: Task["artifacts"]): Task {
  return { id: "t-1", contextId: "c-1", status: { state: TaskState.COMPLETED }, artifacts };
}

describe("mcp gateway - worker artifacts back to MCP results", () => {
  it("results - a tool result survives the worker's artifact: structured content, text, image, audio, embedded resource", () => {
    const result: CallToolResult = {
      content: [
        { type: "text", text: "two things" },
        { type: "image", data: "aGVsbG8=", mimeType: "image/png" },
        { type: "audio", data: "d29ybGQ=", mimeType: "audio/wav" },
        { type: "resource", resource: { uri: "file:///a.txt", text: "inside", mimeType: "text/plain" } },
        {
          type: "resource",
          resource: { uri: "file:///b.bin", blob: "AAE=", mimeType: "application/octet-stream" },
        },
      ],
      structuredContent: { count: 2 },
    };
    const relayed = toolResultOf(taskOf([toolResultToArtifact("s.t", result)]));
    expect(relayed).toEqual(result);
  });

  it("results - a resource link keeps its URI (as its name too: the artifact does not carry one)", () => {
    const relayed = toolResultOf(
      taskOf([
        toolResultToArtifact("s.t", {
          content: [{ type: "resource_link", uri: "test://x", name: "x", mimeType: "text/plain" }],
        }),
      ]),
    );
    expect(relayed.content).toEqual([
      { type: "resource_link", uri: "test://x", name: "test://x", mimeType: "text/plain" },
    ]);
  });

  it("results - resource contents come back as text or blob under their URI; JSON the worker parsed is text again", () => {
    const read = readResultOf(
      taskOf([
        {
          artifactId: "a-1",
          parts: [
            { data: { id: "c-1" }, filename: "crm://contacts/c-1", mediaType: "application/json" },
            { raw: "AAE=", filename: "test://blob", mediaType: "application/octet-stream" },
          ],
        },
      ]),
      "crm://contacts/c-1",
    );
    expect(read.contents).toEqual([
      { uri: "crm://contacts/c-1", text: '{"id":"c-1"}', mimeType: "application/json" },
      { uri: "test://blob", blob: "AAE=", mimeType: "application/octet-stream" },
    ]);
  });
});
