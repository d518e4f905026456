import { once } from "node:events";
import { createServer, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createOpenAiAdapter } from "../../services/llm-agent/openai-adapter.ts";

/** A real HTTP peer speaking the Chat Completions shape, the way OpenAI-compatible servers do. */
interface Seen {
  authorization: string | undefined;
  path: string | undefined;
  body: Record<string, unknown>;
}

async function readBody(request: IncomingMessage): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = [];
  for await (const chunk of request) chunks.push(chunk as Buffer);
  return JSON.parse(Buffer.concat(chunks).toString("utf8")) as Record<string, unknown>;
}

describe("llm agent - OpenAI-compatible Chat Completions adapter against a real HTTP server", () => {
  let server: Server;
  let baseUrl: string;
  const seen: Seen[] = [];
  beforeAll(async () => {
    server = createServer((request, response) => {
      void readBody(request).then((body) => {
        seen.push({ authorization: request.headers.authorization, path: request.url, body });
        if (request.headers.authorization !== "Bearer sk-test") {
          response.writeHead(401, { "content-type": "application/json" });
          response.end(JSON.stringify({ error: { message: "Incorrect API key provided" } }));
          return;
        }
        const messages = body.messages as Array<{ role: string; content: unknown }>;
        const last = messages.at(-1);
        response.writeHead(200, { "content-type": "application/json" });
        response.end(
          JSON.stringify({
            id: "chatcmpl-1",
            object: "chat.completion",
            model: `${String(body.model)}-2026`,
            choices: [
              {
                index: 0,
                message: { role: "assistant", content: `you said ${JSON.stringify(last?.content)}` },
                finish_reason: body.max_tokens === 1 ? "length" : "stop",
              },
            ],
          }),
        );
      });
    });
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`;
  });
  afterAll(async () => {
    server.close();
    await once(server, "close");
  });

  it("llm - sends the system prompt and messages, maps the answer to a CreateMessageResult", async () => {
    const model = createOpenAiAdapter({ baseUrl, apiKey: "sk-test", model: "gpt-test", timeoutMs: 5_000 });
    const answer = await model.complete(
      {
        systemPrompt: "be brief",
        maxTokens: 50,
        temperature: 0.2,
        stopSequences: ["\n\n"],
        messages: [{ role: "user", content: { type: "text", text: "hello" } }],
      },
      new AbortController().signal,
    );
    expect(answer).toEqual({
      model: "gpt-test-2026",
      role: "assistant",
      content: { type: "text", text: 'you said "hello"' },
      stopReason: "endTurn",
    });
    const request = seen.at(-1);
    expect(request?.path).toBe("/v1/chat/completions");
    expect(request?.body).toEqual({
      model: "gpt-test",
      messages: [
        { role: "system", content: "be brief" },
        { role: "user", content: "hello" },
      ],
      max_tokens: 50,
      temperature: 0.2,
      stop: ["\n\n"],
    });
  });

  it("llm - images go as image_url parts, and finish_reason length is maxTokens", async () => {
    const model = createOpenAiAdapter({ baseUrl, apiKey: "sk-test", model: "gpt-test", timeoutMs: 5_000 });
    const answer = await model.complete(
      {
        maxTokens: 1,
        messages: [
          {
            role: "user",
            content: [
              { type: "text", text: "what is this?" },
              { type: "image", data: "iVBORw0KGgo=", mimeType: "image/png" },
            ],
          },
        ],
      },
      new AbortController().signal,
    );
    expect(answer.stopReason).toBe("maxTokens");
    expect(seen.at(-1)?.body.messages).toEqual([
      {
        role: "user",
        content: [
          { type: "text", text: "what is this?" },
          { type: "image_url", image_url: { url: "data:image/png;base64,iVBORw0KGgo=" } },
        ],
      },
    ]);
  });

  it("llm - a refused key is a CONFIG_INVALID error that names LOOM_LLM_API_KEY", async () => {
    const model = createOpenAiAdapter({ baseUrl, apiKey: "wrong", model: "gpt-test", timeoutMs: 5_000 });
    await expect(
      model.complete(
        { maxTokens: 5, messages: [{ role: "user", content: { type: "text", text: "hi" } }] },
        new AbortController().signal,
      ),
    ).rejects.toMatchObject({ code: "CONFIG_INVALID", message: expect.stringContaining("LOOM_LLM_API_KEY") });
  });

  it("llm - a provider that is not there is AGENT_UNAVAILABLE", async () => {
    const model = createOpenAiAdapter({
      baseUrl: "http://127.0.0.1:9/v1",
      apiKey: undefined,
      model: "gpt-test",
      timeoutMs: 5_000,
    });
    await expect(
      model.complete(
        { maxTokens: 5, messages: [{ role: "user", content: { type: "text", text: "hi" } }] },
        new AbortController().signal,
      ),
    ).rejects.toMatchObject({ code: "AGENT_UNAVAILABLE" });
  });
});
