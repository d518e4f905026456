import { randomUUID } from "node:crypto";
import type { CallToolResult } from "@modelcontextprotocol/sdk/types.js";
import type { Artifact, Part } from "../../schemas/a2a.ts";

/**
 * Turns an MCP tool result into an A2A Artifact: structured content becomes a DataPart, text a
 * TextPart, images and audio raw file parts, links and embedded resources URL or file parts.
 */
export function toolResultToArtifact(qualifiedTool: string, result: CallToolResult): Artifact {
  const parts: Part[] = [];
  if (result.structuredContent !== undefined) {
    parts.push({ data: result.structuredContent, mediaType: "application/json" });
  }
  for (const block of result.content) {
    switch (block.type) {
      case "text":
        parts.push({ text: block.text, mediaType: "text/plain" });
        break;
      case "image":
      case "audio":
        parts.push({ raw: block.data, mediaType: block.mimeType });
        break;
      case "resource_link":
        parts.push({
          url: block.uri,
          ...(block.mimeType === undefined ? {} : { mediaType: block.mimeType }),
        });
        break;
      case "resource": {
        const { resource } = block;
        const mediaType = resource.mimeType === undefined ? {} : { mediaType: resource.mimeType };
        parts.push(
          "text" in resource
            ? { text: resource.text, filename: resource.uri, ...mediaType }
            : { raw: resource.blob, filename: resource.uri, ...mediaType },
        );
        break;
      }
    }
  }
  if (parts.length === 0) parts.push({ text: "" });
  return { artifactId: randomUUID(), name: qualifiedTool, parts };
}

/** The readable text of an error result, for the error message. */
export function resultText(result: CallToolResult): string {
  const texts = result.content.flatMap((block) => (block.type === "text" ? [block.text] : []));
  return texts.join("\n") || "the tool reported an error without a message";
}
