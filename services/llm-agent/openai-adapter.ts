import { z } from "zod";
import { ErrorCode } from "../../schemas/errors.ts";
import {
  type CreateMessageParams,
  MAX_SAMPLING_TOKENS,
  type SamplingContent,
  SamplingRole,
} from "../../schemas/sampling.ts";
import { LoomError } from "../kit/index.ts";
import type { LanguageModel } from "./language-model.ts";

export interface OpenAiAdapterOptions {
  /** Base URL of the API, up to (not including) `/chat/completions`. */
  baseUrl: string;
  apiKey: string | undefined;
  model: string;
  timeoutMs: number;
}

/** The part of a Chat Completions response the adapter reads. */
const ChatCompletionSchema = z.object({
  model: z.string().optional(),
  choices: z
    .array(
      z.object({
        message: z.object({ content: z.string().nullable().optional() }),
        finish_reason: z.string().nullable().optional(),
      }),
    )
    .min(1),
});

/** OpenAI's finish reasons in MCP's words; others pass through as they are. */
const STOP_REASONS: Record<string, string> = { stop: "endTurn", length: "maxTokens" };

/**
 * Answers sampling requests with an OpenAI-compatible Chat Completions API (OpenAI, Azure's
 * compatible endpoint, vLLM, Ollama, LM Studio...). The system prompt becomes the first message;
 * images and audio become `image_url` and `input_audio` parts.
 */
export function createOpenAiAdapter(options: OpenAiAdapterOptions): LanguageModel {
  const url = `${options.baseUrl.replace(/\/+$/, "")}/chat/completions`;
  return {
    name: options.model,
    async complete(params, signal) {
      const body = {
        model: options.model,
        messages: [
          ...(params.systemPrompt === undefined ? [] : [{ role: "system", content: params.systemPrompt }]),
          ...params.messages.map((message) => ({
            role: message.role,
            content: chatContent(message.content),
          })),
        ],
        max_tokens: Math.min(params.maxTokens, MAX_SAMPLING_TOKENS),
        ...(params.temperature === undefined ? {} : { temperature: params.temperature }),
        ...(params.stopSequences === undefined || params.stopSequences.length === 0
          ? {}
          : { stop: params.stopSequences }),
      };
      let response: Response;
      try {
        response = await fetch(url, {
          method: "POST",
          headers: {
            "content-type": "application/json",
            ...(options.apiKey === undefined ? {} : { authorization: `Bearer ${options.apiKey}` }),
          },
          body: JSON.stringify(body),
          signal: AbortSignal.any([signal, AbortSignal.timeout(options.timeoutMs)]),
        });
      } catch (cause) {
        if (cause instanceof Error && cause.name === "TimeoutError") {
          throw new LoomError(
            ErrorCode.TIMEOUT,
            `the LLM provider did not answer within ${options.timeoutMs} ms`,
            {
              cause,
            },
          );
        }
        throw new LoomError(ErrorCode.AGENT_UNAVAILABLE, `cannot reach the LLM provider at ${url}`, {
          cause,
        });
      }
      if (!response.ok) throw await providerError(response, url);
      const parsed = ChatCompletionSchema.safeParse(await response.json().catch(() => undefined));
      if (!parsed.success) {
        throw new LoomError(
          ErrorCode.AGENT_UNAVAILABLE,
          `the LLM provider at ${url} sent no chat completion`,
        );
      }
      const [choice] = parsed.data.choices;
      const reason = choice?.finish_reason ?? undefined;
      return {
        model: parsed.data.model ?? options.model,
        role: SamplingRole.ASSISTANT,
        content: { type: "text", text: choice?.message.content ?? "" },
        ...(reason === undefined ? {} : { stopReason: STOP_REASONS[reason] ?? reason }),
      };
    },
  };
}

type ChatPart =
  | { type: "text"; text: string }
  | { type: "image_url"; image_url: { url: string } }
  | { type: "input_audio"; input_audio: { data: string; format: string } };

/** Plain text stays a string (what every compatible server takes); anything else becomes parts. */
function chatContent(content: CreateMessageParams["messages"][number]["content"]): string | ChatPart[] {
  const blocks: SamplingContent[] = Array.isArray(content) ? content : [content];
  if (blocks.every((block) => block.type === "text")) {
    return blocks.map((block) => (block.type === "text" ? block.text : "")).join("\n");
  }
  return blocks.map((block): ChatPart => {
    if (block.type === "text") return { type: "text", text: block.text };
    if (block.type === "image") {
      return { type: "image_url", image_url: { url: `data:${block.mimeType};base64,${block.data}` } };
    }
    return {
      type: "input_audio",
      input_audio: { data: block.data, format: block.mimeType.split("/")[1] ?? "wav" },
    };
  });
}

/** A refusal the operator can act on: a bad key is configuration, overload is worth a retry. */
async function providerError(response: Response, url: string): Promise<LoomError> {
  const detail = (await response.text().catch(() => "")).slice(0, 500);
  const what = `the LLM provider at ${url} answered ${response.status}${detail === "" ? "" : `: ${detail}`}`;
  if (response.status === 401 || response.status === 403) {
    return new LoomError(ErrorCode.CONFIG_INVALID, `${what} (check LOOM_LLM_API_KEY)`);
  }
  if (response.status === 400 || response.status === 404 || response.status === 422) {
    return new LoomError(ErrorCode.INVALID_INPUT, `${what} (check LOOM_LLM_MODEL and the request)`);
  }
  return new LoomError(ErrorCode.AGENT_UNAVAILABLE, what);
}
