import type { Artifact } from "../../schemas/a2a.ts";

/**
 * The value a step's result takes in `$steps`: structured data when the tool gave some, else its
 * text (parsed when it is JSON, as many tools return JSON as text).
 */
export function artifactValue(artifact: Artifact | undefined): unknown {
  if (artifact === undefined) return null;
  const data = artifact.parts.find((part) => "data" in part);
  if (data !== undefined && "data" in data) return data.data;
  const texts = artifact.parts.flatMap((part) => ("text" in part ? [part.text] : []));
  if (texts.length === 0) return artifact.parts;
  const text = texts.join("\n");
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}
