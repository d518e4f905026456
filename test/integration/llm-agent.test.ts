import { randomUUID } from "node:crypto";
import { once } from "node:events";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import type { NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AgentTaskContract } from "../../schemas/contracts.ts";
import type { GrantClaims } from "../../schemas/policy.ts";
import type { SamplingRequest } from "../../schemas/sampling.ts";
import { agentTasksSubject, Buckets, LLM_AGENT } from "../../schemas/subjects.ts";
import { GrantSigner } from "../../services/acp-policy/grant-signer.ts";
import { type Stack, startStack } from "../../services/cli/stack.ts";
import { digestOf } from "../../services/kit/digest.ts";
import { encodeJson, openBucket, request } from "../../services/kit/index.ts";
import { NatsUser, type NatsUsersServer, startNatsWithUsers } from "../helpers/nats-users.ts";

const SAMPLING: SamplingRequest = {
  server: "everything",
  params: {
    systemPrompt: "You are a helpful test server.",
    maxTokens: 50,
    messages: [{ role: "user", content: { type: "text", text: "what is loom?" } }],
  },
};

const NO_OBLIGATIONS = { maskFields: [], maskPii: [], maskPatterns: [] };

/**
 * The llm agent as a process on a real nats-server, configured (LOOM_LLM_*) for an
 * OpenAI-compatible server played by a real HTTP peer; grants come from acp-policy's own signer.
 */
describe("llm agent - a sampling task with a grant, answered by an OpenAI-compatible API", () => {
  let nats: NatsUsersServer;
  /** The worker's user, which hands the llm agent its sampling tasks. */
  let nc: NatsConnection;
  /** acp-policy's user, the one that publishes grant keys. */
  let policy: NatsConnection;
  let http: Server;
  let stack: Stack;
  let logDir: string;
  let signer: GrantSigner;
  const bodies: Record<string, unknown>[] = [];

  beforeAll(async () => {
    http = createServer((incoming, response) => {
      const chunks: Buffer[] = [];
      incoming.on("data", (chunk: Buffer) => chunks.push(chunk));
      incoming.on("end", () => {
        bodies.push(JSON.parse(Buffer.concat(chunks).toString("utf8")));
        response.writeHead(200, { "content-type": "application/json" });
        response.end(
          JSON.stringify({
            model: "test-model-1",
            choices: [
              { message: { role: "assistant", content: "Loom weaves tools." }, finish_reason: "stop" },
            ],
          }),
        );
      });
    });
    http.listen(0, "127.0.0.1");
    await once(http, "listening");
    nats = await startNatsWithUsers();
    nc = await nats.connectAs(NatsUser.MCP_WORKER);
    policy = await nats.connectAs(NatsUser.ACP_POLICY);
    signer = await GrantSigner.create(await openBucket(policy, Buckets.GRANT_KEYS, { replicas: 1 }), 60_000);
    logDir = await mkdtemp(join(tmpdir(), "loom-llm-agent-"));
    stack = await startStack({
      natsUrl: nats.urlAs(NatsUser.LLM_AGENT),
      logDir,
      services: ["llm-agent"],
      env: {
        LOOM_LLM_BASE_URL: `http://127.0.0.1:${(http.address() as AddressInfo).port}/v1`,
        LOOM_LLM_API_KEY: "sk-test",
        LOOM_LLM_MODEL: "test-model",
        LOOM_HTTP_PORT: "0",
        OTEL_TRACES_EXPORTER: "none",
      },
    });
    // Any reply, even the typed error for an empty message, proves the agent serves.
    for (let tries = 0; ; tries += 1) {
      const served = await nc.request(agentTasksSubject(LLM_AGENT), encodeJson({}), { timeout: 1_000 }).then(
        () => true,
        () => false,
      );
      if (served) break;
      if (tries > 60) throw new Error(`the llm agent did not start (logs in ${logDir})`);
      await sleep(250);
    }
  });
  afterAll(async () => {
    await stack?.stop();
    await Promise.all([nc?.close(), policy?.close()]);
    await nats?.[Symbol.asyncDispose]();
    http?.close();
    await rm(logDir, { recursive: true, force: true });
  });

  const grantFor = (claims: Partial<GrantClaims>) =>
    signer.sign({
      sub: "tess",
      run: "r-1",
      step: "ask",
      action: "llm.sample",
      tool: "everything",
      args: digestOf(SAMPLING),
      obligations: NO_OBLIGATIONS,
      attempt: 0,
      rule: "tests",
      roles: ["analyst"],
      attributes: {},
      jti: randomUUID(),
      ...claims,
    });

  const ask = async (grant: string) =>
    request(
      nc,
      agentTasksSubject(LLM_AGENT),
      AgentTaskContract,
      {
        messageId: "m-1",
        role: "ROLE_USER",
        parts: [{ data: SAMPLING }],
        metadata: { runId: "r-1", stepId: "ask", grant },
      },
      { timeoutMs: 10_000 },
    );

  it("llm - with a grant for exactly this request, the provider's answer comes back as a CreateMessageResult", async () => {
    const task = await ask(await grantFor({}));
    expect(task.artifacts?.[0]?.parts[0]).toEqual({
      data: {
        model: "test-model-1",
        role: "assistant",
        content: { type: "text", text: "Loom weaves tools." },
        stopReason: "endTurn",
      },
      mediaType: "application/json",
    });
    expect(bodies.at(-1)).toMatchObject({
      model: "test-model",
      messages: [
        { role: "system", content: "You are a helpful test server." },
        { role: "user", content: "what is loom?" },
      ],
      max_tokens: 50,
    });
  });

  it("llm - a grant for other arguments, another action or another run is refused before the provider is asked", async () => {
    const asked = bodies.length;
    for (const [claims, reason] of [
      [{ args: digestOf({ ...SAMPLING, server: "other" }) }, "the grant is for other arguments"],
      [
        { action: "tools.call" as const },
        "the grant is for tools.call everything, not llm.sample everything",
      ],
      [{ run: "r-2" }, "the grant is for another run or step"],
    ] as const) {
      await expect(ask(await grantFor(claims))).rejects.toMatchObject({
        code: "GRANT_REFUSED",
        message: reason,
      });
    }
    expect(bodies.length).toBe(asked);
  });
});
