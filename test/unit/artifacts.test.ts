import { Artifact as SdkArtifact } from "@a2a-js/sdk";
import type { CallToolResult } from "@modelcontextprotocol/sdk/types.js";
import { describe, expect, it } from "vitest";
import { type Artifact, ArtifactSchema } from "../../schemas/a2a.ts";
import { resultText, toolResultToArtifact } from "../../services/mcp-worker/artifacts.ts";

const PNG_BASE64 = "iVBORw0KGgo=";

/** Converts and checks the artifact is valid for Loom and reads back unchanged through the A2A SDK. */
function convert(result: CallToolResult, tool = "crm.get_contact"): Artifact {
  const artifact = toolResultToArtifact(tool, result);
  expect(ArtifactSchema.parse(artifact)).toEqual(artifact);
  expect(SdkArtifact.toJSON(SdkArtifact.fromJSON(artifact))).toEqual(artifact);
  return artifact;
}

describe("MCP tool result to A2A artifact", () => {
  it("artifacts - structured content becomes a JSON data part ahead of the text", () => {
    const contact = { id: "c-1", name: "Ada Lovelace", email: "ada@example.com" };
    const artifact = convert({
      content: [{ type: "text", text: JSON.stringify(contact) }],
      structuredContent: contact,
    });
    expect(artifact.parts).toEqual([
      { data: contact, mediaType: "application/json" },
      { text: JSON.stringify(contact), mediaType: "text/plain" },
    ]);
  });

  it("artifacts - the artifact is named after the tool and has a fresh id", () => {
    const result: CallToolResult = { content: [{ type: "text", text: "12:00" }] };
    const first = convert(result, "time.get_time");
    const second = convert(result, "time.get_time");
    expect(first.name).toBe("time.get_time");
    expect(first.artifactId).not.toBe("");
    expect(first.artifactId).not.toBe(second.artifactId);
  });

  it("artifacts - text blocks become text parts, in order", () => {
    const artifact = convert({
      content: [
        { type: "text", text: "one" },
        { type: "text", text: "two" },
      ],
    });
    expect(artifact.parts).toEqual([
      { text: "one", mediaType: "text/plain" },
      { text: "two", mediaType: "text/plain" },
    ]);
  });

  it("artifacts - an image becomes a raw part with its media type", () => {
    const artifact = convert({ content: [{ type: "image", data: PNG_BASE64, mimeType: "image/png" }] });
    expect(artifact.parts).toEqual([{ raw: PNG_BASE64, mediaType: "image/png" }]);
  });

  it("artifacts - audio becomes a raw part with its media type", () => {
    const artifact = convert({ content: [{ type: "audio", data: "UklGRg==", mimeType: "audio/wav" }] });
    expect(artifact.parts).toEqual([{ raw: "UklGRg==", mediaType: "audio/wav" }]);
  });

  it("artifacts - a resource link becomes a url part, with its media type when known", () => {
    const artifact = convert({
      content: [
        { type: "resource_link", uri: "mcp://crm/contacts/c-1", name: "c-1", mimeType: "application/json" },
        { type: "resource_link", uri: "https://example.com/report", name: "report" },
      ],
    });
    expect(artifact.parts).toEqual([
      { url: "mcp://crm/contacts/c-1", mediaType: "application/json" },
      { url: "https://example.com/report" },
    ]);
  });

  it("artifacts - an embedded text resource becomes a text part named by its uri", () => {
    const artifact = convert({
      content: [
        { type: "resource", resource: { uri: "file:///notes.md", mimeType: "text/markdown", text: "# hi" } },
      ],
    });
    expect(artifact.parts).toEqual([
      { text: "# hi", filename: "file:///notes.md", mediaType: "text/markdown" },
    ]);
  });

  it("artifacts - an embedded blob resource becomes a raw part named by its uri", () => {
    const artifact = convert({
      content: [{ type: "resource", resource: { uri: "file:///chart.png", blob: PNG_BASE64 } }],
    });
    expect(artifact.parts).toEqual([{ raw: PNG_BASE64, filename: "file:///chart.png" }]);
  });

  it("artifacts - a result with no content still makes a valid artifact with one part", () => {
    const artifact = toolResultToArtifact("erp.ping", { content: [] });
    expect(ArtifactSchema.safeParse(artifact).success).toBe(true);
    expect(artifact.parts).toHaveLength(1);
  });

  it("artifacts - resultText joins the text blocks of an error result", () => {
    expect(
      resultText({
        isError: true,
        content: [
          { type: "text", text: "contact c-9 not found" },
          { type: "image", data: PNG_BASE64, mimeType: "image/png" },
          { type: "text", text: "try c-1" },
        ],
      }),
    ).toBe("contact c-9 not found\ntry c-1");
  });

  it("artifacts - resultText says so when the error has no text", () => {
    expect(resultText({ isError: true, content: [] })).toContain("without a message");
  });
});
