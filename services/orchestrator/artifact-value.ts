import type { Artifact } from "../../schemas/a2a.ts";

/** What JSON text can start with: an object, an array, a string, a number, or a literal. */
const LOOKS_LIKE_JSON = /^\s*(?:[[{"\d-]|true|false|null)/;

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
  // Most text is not JSON: a failed parse throws, and a throw costs more than this look.
  if (!LOOKS_LIKE_JSON.test(text)) return text;
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}
