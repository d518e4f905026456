import { describe, expect, it } from "vitest";
import { createLocalModel, LOCAL_MODEL_NAME } from "../../services/llm-agent/local-model.ts";

const model = createLocalModel();
const signal = new AbortController().signal;

describe("llm agent - the deterministic local model", () => {
  it("llm - answers with the last user message's text, the same every time", async () => {
    const params = {
      systemPrompt: "You are a helpful test server.",
      temperature: 0.7,
      maxTokens: 100,
      messages: [
        { role: "user" as const, content: { type: "text" as const, text: "first question" } },
        { role: "assistant" as const, content: { type: "text" as const, text: "an answer" } },
        { role: "user" as const, content: { type: "text" as const, text: "What is  Loom?" } },
      ],
    };
    const first = await model.complete(params, signal);
    expect(first).toEqual({
      model: LOCAL_MODEL_NAME,
      role: "assistant",
      content: { type: "text", text: "loom-local-echo: What is  Loom?" },
      stopReason: "endTurn",
    });
    expect(await model.complete(params, signal)).toEqual(first);
  });

  it("llm - cuts at a stop sequence, then at maxTokens words", async () => {
    const text = "one two three STOP four five";
    const stopped = await model.complete(
      {
        maxTokens: 10,
        stopSequences: ["STOP"],
        messages: [{ role: "user", content: { type: "text", text } }],
      },
      signal,
    );
    expect(stopped.content).toEqual({ type: "text", text: "loom-local-echo: one two three " });
    expect(stopped.stopReason).toBe("stopSequence");
    const short = await model.complete(
      { maxTokens: 2, messages: [{ role: "user", content: [{ type: "text", text }] }] },
      signal,
    );
    expect(short.content).toEqual({ type: "text", text: "loom-local-echo: one two" });
    expect(short.stopReason).toBe("maxTokens");
  });
});
