import { MAX_SAMPLING_TOKENS, SamplingRole } from "../../schemas/sampling.ts";
import { type LanguageModel, textOf } from "./language-model.ts";

export const LOCAL_MODEL_NAME = "loom-local-echo";
export const LOCAL_MODEL_PREFIX = "loom-local-echo: ";

/**
 * A deterministic stand-in for a language model, for tests and development: no randomness, no
 * network. It answers with `loom-local-echo: ` followed by the text of the last user message,
 * cut at the first of the request's stop sequences (stopReason `stopSequence`), then to at most
 * `maxTokens` whitespace-separated words (stopReason `maxTokens`); otherwise stopReason `endTurn`.
 * The system prompt, temperature and model preferences do not change the answer.
 */
export function createLocalModel(): LanguageModel {
  return {
    name: LOCAL_MODEL_NAME,
    async complete(params) {
      const lastUser = params.messages.findLast((message) => message.role === SamplingRole.USER);
      let text = lastUser === undefined ? "" : textOf(lastUser.content);
      let stopReason = "endTurn";
      const stops = (params.stopSequences ?? [])
        .map((stop) => (stop === "" ? -1 : text.indexOf(stop)))
        .filter((index) => index >= 0);
      if (stops.length > 0) {
        text = text.slice(0, Math.min(...stops));
        stopReason = "stopSequence";
      }
      const words = text.split(/\s+/).filter((word) => word !== "");
      const limit = Math.min(params.maxTokens, MAX_SAMPLING_TOKENS);
      if (words.length > limit) {
        text = words.slice(0, limit).join(" ");
        stopReason = "maxTokens";
      }
      return {
        model: LOCAL_MODEL_NAME,
        role: SamplingRole.ASSISTANT,
        content: { type: "text", text: `${LOCAL_MODEL_PREFIX}${text}` },
        stopReason,
      };
    },
  };
}
