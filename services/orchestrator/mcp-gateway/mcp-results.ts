import type {
  CallToolResult,
  CompleteResult,
  GetPromptResult,
  ReadResourceResult,
} from "@modelcontextprotocol/sdk/types.js";
import type { Artifact, Part, Task } from "../../../schemas/a2a.ts";

type ContentBlock = CallToolResult["content"][number];

/**
 * The worker answers with A2A artifacts (masked as policy required); MCP clients want MCP results.
 * These turn the worker's artifacts back into them, following how the worker built them.
 */
export function toolResultOf(task: Task): CallToolResult {
  const parts = firstArtifact(task).parts;
  const data = parts.find((part) => "data" in part);
  const content = parts.flatMap((part): ContentBlock[] => ("data" in part ? [] : [contentOf(part)]));
  return {
    content,
    ...(data !== undefined && "data" in data && isRecord(data.data) ? { structuredContent: data.data } : {}),
  };
}

export function readResultOf(task: Task, uri: string): ReadResourceResult {
  return {
    contents: firstArtifact(task).parts.map((part) => {
      const resourceUri = part.filename ?? uri;
      const mimeType = part.mediaType === undefined ? {} : { mimeType: part.mediaType };
      if ("raw" in part) return { uri: resourceUri, blob: part.raw, ...mimeType };
      if ("data" in part) return { uri: resourceUri, text: JSON.stringify(part.data), ...mimeType };
      if ("url" in part) return { uri: part.url, text: "", ...mimeType };
      return { uri: resourceUri, text: part.text, ...mimeType };
    }),
  };
}

export function promptResultOf(task: Task): GetPromptResult {
  return dataOf(task) as GetPromptResult;
}

export function completeResultOf(task: Task): CompleteResult {
  return dataOf(task) as CompleteResult;
}

/** One tool result block from one part, as `toolResultToArtifact` on the worker made it. */
function contentOf(part: Exclude<Part, { data: unknown }>): ContentBlock {
  if ("text" in part) {
    if (part.filename === undefined) return { type: "text", text: part.text };
    return {
      type: "resource",
      resource: {
        uri: part.filename,
        text: part.text,
        ...(part.mediaType === undefined ? {} : { mimeType: part.mediaType }),
      },
    };
  }
  if ("url" in part) {
    return {
      type: "resource_link",
      uri: part.url,
      name: part.url,
      ...(part.mediaType === undefined ? {} : { mimeType: part.mediaType }),
    };
  }
  const mimeType = part.mediaType ?? "application/octet-stream";
  if (part.filename !== undefined) {
    return { type: "resource", resource: { uri: part.filename, blob: part.raw, mimeType } };
  }
  if (mimeType.startsWith("audio/")) return { type: "audio", data: part.raw, mimeType };
  return { type: "image", data: part.raw, mimeType };
}

function firstArtifact(task: Task): Artifact {
  return task.artifacts?.[0] ?? { artifactId: task.id, parts: [{ text: "" }] };
}

function dataOf(task: Task): unknown {
  const data = firstArtifact(task).parts.find((part) => "data" in part);
  return data !== undefined && "data" in data ? data.data : {};
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
