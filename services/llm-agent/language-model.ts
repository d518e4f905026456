import type { CreateMessageAnswer, CreateMessageParams } from "../../schemas/sampling.ts";

/** Something that answers an MCP sampling request: the local model, or a provider over HTTP. */
export interface LanguageModel {
  /** What the model calls itself in answers and logs. */
  readonly name: string;
  complete(params: CreateMessageParams, signal: AbortSignal): Promise<CreateMessageAnswer>;
}

/** The text of a sampling message's content, its non-text blocks left out. */
export function textOf(content: CreateMessageParams["messages"][number]["content"]): string {
  const blocks = Array.isArray(content) ? content : [content];
  return blocks.flatMap((block) => (block.type === "text" ? [block.text] : [])).join("\n");
}
