import { rm } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import {
  type CallToolResult,
  CreateMessageRequestSchema,
  ElicitRequestSchema,
} from "@modelcontextprotocol/sdk/types.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { AuditRecord } from "../../schemas/audit.ts";
import { type Stack, startStack } from "../../services/cli/stack.ts";
import { writeEverythingConfig } from "../helpers/everything-config.ts";
import { type Loom, NatsUser, startLoom, tokenFor } from "../helpers/loom.ts";
import { freePort } from "../helpers/ports.ts";
import { testServiceEnv } from "../helpers/service-env.ts";
import { TEST_AUTH_ENV } from "../helpers/tokens.ts";

/** Testers may let server-everything sample; guests may call its tools but not sample. */
const POLICY = `
version: "test"
rules:
  - { name: people-use-everything, effect: allow, roles: [tester, guest], actions: [tools.call], tools: ["everything.*"] }
  - { name: testers-sample-through-everything, effect: allow, roles: [tester], actions: [llm.sample], tools: [everything] }
`;

function textOf(result: CallToolResult): string {
  return result.content.map((block) => (block.type === "text" ? block.text : "")).join("\n");
}

describe("mcp gateway - a server's sampling and elicitation reach the gateway's own client", () => {
  let loom: Loom;
  let dir: string;
  let mcpUrl: URL;
  let env: Record<string, string>;
  const clients: Client[] = [];
  const replicas: Stack[] = [];
  beforeAll(async () => {
    // A short call timeout: the client's user takes longer to answer, and that time must not count.
    const config = await writeEverythingConfig("loom-client-relay-", { policy: POLICY, timeout: "3s" });
    dir = config.dir;
    const port = await freePort();
    mcpUrl = new URL(`http://127.0.0.1:${port}/mcp`);
    env = { ...config.env, OTEL_TRACES_EXPORTER: "none" };
    loom = await startLoom({
      env: { ...env, LOOM_A2A_PORT: String(port) },
      tools: ["everything.trigger-sampling-request", "everything.trigger-elicitation-request"],
    });
  });
  afterAll(async () => {
    await Promise.all(clients.map((client) => client.close()));
    await Promise.all(replicas.map((replica) => replica.stop()));
    await loom?.[Symbol.asyncDispose]();
    await rm(dir, { recursive: true, force: true });
  });

  /** A client that declares sampling and elicitation, answering with its own model and user. */
  async function open(
    token: string,
    capable: boolean,
    fetch?: typeof globalThis.fetch,
  ): Promise<{ client: Client; sessionId: string }> {
    const client = new Client(
      { name: "relay-test", version: "1.0.0" },
      capable ? { capabilities: { sampling: {}, elicitation: {} } } : undefined,
    );
    if (capable) {
      client.setRequestHandler(CreateMessageRequestSchema, (request) => {
        const last = request.params.messages.at(-1)?.content;
        const asked = last !== undefined && !Array.isArray(last) && last.type === "text" ? last.text : "";
        return {
          model: "client-own-model",
          role: "assistant",
          content: { type: "text", text: `the client's model read: ${asked}` },
        };
      });
      client.setRequestHandler(ElicitRequestSchema, async () => {
        // The client's user takes longer than the call's 3 s timeout (and the 2 s reply margin).
        await sleep(6_000);
        return { action: "accept", content: { name: "Ada Lovelace", check: true, email: "ada@example.com" } };
      });
    }
    const transport = new StreamableHTTPClientTransport(mcpUrl, {
      requestInit: { headers: { Authorization: `Bearer ${token}` } },
      ...(fetch === undefined ? {} : { fetch }),
    });
    await client.connect(transport);
    clients.push(client);
    return { client, sessionId: transport.sessionId ?? "" };
  }

  async function auditOf(runId: string): Promise<AuditRecord[]> {
    const audit = await loom.cli(["audit", "tail", "--run", runId, "--json", "-n", "50"]);
    return audit.stdout
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line) as AuditRecord);
  }

  it("sampling - the client's own model answers, after policy allowed llm.sample for the caller", async () => {
    const { client, sessionId } = await open(tokenFor("tess", "tester"), true);
    const result = (await client.callTool({
      name: "everything.trigger-sampling-request",
      arguments: { prompt: "what is loom?", maxTokens: 50 },
    })) as CallToolResult;
    expect(result.isError).not.toBe(true);
    expect(textOf(result)).toContain('"model": "client-own-model"');
    expect(textOf(result)).toContain(
      "the client's model read: Resource trigger-sampling-request context: what is loom?",
    );
    expect(await auditOf(`mcp-${sessionId}`)).toContainEqual(
      expect.objectContaining({
        kind: "policy.decision",
        action: "llm.sample",
        resource: "everything",
        effect: "allow",
        rule: "testers-sample-through-everything",
        principal: "tess",
      }),
    );
  });

  it("elicitation - the client's user answers past the call's timeout, and the exchange is audited as digests", async () => {
    const { client, sessionId } = await open(tokenFor("tess", "tester"), true);
    const result = (await client.callTool({
      name: "everything.trigger-elicitation-request",
      arguments: {},
    })) as CallToolResult;
    expect(result.isError).not.toBe(true);
    const text = textOf(result);
    expect(text).toContain("User provided the requested information!");
    expect(text).toContain("- Name: Ada Lovelace");
    expect(text).toContain("- Email: ada@example.com");
    const records = await auditOf(`mcp-${sessionId}`);
    const answered = records.find((record) => record.kind === "elicitation.answer");
    expect(answered).toMatchObject({ resource: "everything", outcome: "accept", principal: "tess" });
    expect(answered?.argsDigest).toMatch(/^[0-9a-f]{64}$/);
    expect(answered?.resultDigest).toMatch(/^[0-9a-f]{64}$/);
    expect(JSON.stringify(records)).not.toContain("Ada Lovelace");
  });

  it("sampling - a principal policy does not let sample gets the tool's error naming the rule", async () => {
    const { client } = await open(tokenFor("gus", "guest"), true);
    const result = (await client.callTool({
      name: "everything.trigger-sampling-request",
      arguments: { prompt: "hi", maxTokens: 10 },
    })) as CallToolResult;
    expect(result.isError).toBe(true);
    expect(textOf(result)).toContain("policy denied sampling through everything (rule default-deny)");
  });

  it("a client that declared neither capability is not asked: the server's requests are refused, saying why", async () => {
    const { client } = await open(tokenFor("tess", "tester"), false);
    const sampled = (await client.callTool({
      name: "everything.trigger-sampling-request",
      arguments: { prompt: "hi", maxTokens: 10 },
    })) as CallToolResult;
    expect(sampled.isError).toBe(true);
    const elicited = (await client.callTool({
      name: "everything.trigger-elicitation-request",
      arguments: {},
    })) as CallToolResult;
    expect(elicited.isError).toBe(true);
    expect(textOf(sampled)).toContain(
      'Loom cannot answer sampling/createMessage from "everything": the MCP gateway\'s client did not declare the sampling capability',
    );
    expect(textOf(elicited)).toContain(
      'Loom cannot answer elicitation/create from "everything": the MCP gateway\'s client did not declare the elicitation capability',
    );
  });

  it("sampling - the client's answer landing on another gateway replica still reaches the call waiting for it", async () => {
    const port = await freePort();
    replicas.push(
      await startStack({
        natsUrl: loom.users.urlAs(NatsUser.ORCHESTRATOR),
        logDir: join(dir, "replica-logs"),
        services: ["orchestrator"],
        env: {
          LOG_LEVEL: "debug",
          ...testServiceEnv(),
          ...TEST_AUTH_ENV,
          ...env,
          LOOM_A2A_PORT: String(port),
        },
      }),
    );
    const other = `http://127.0.0.1:${port}`;
    for (
      let tries = 0;
      !(await fetch(`${other}/.well-known/oauth-protected-resource`).catch(() => undefined))?.ok;
      tries += 1
    ) {
      if (tries > 100) throw new Error("the second orchestrator did not start");
      await sleep(200);
    }
    // The call goes to the first replica; every answer the client posts goes to the second.
    let answersPosted = 0;
    const answersToOther: typeof globalThis.fetch = (input, init) => {
      const body = typeof init?.body === "string" ? init.body : "";
      const answer = /"result"|"error"/.test(body) && !/"method"/.test(body);
      if (answer) answersPosted += 1;
      return fetch(answer ? `${other}/mcp` : input, init);
    };
    const { client } = await open(tokenFor("tess", "tester"), true, answersToOther);
    const result = (await client.callTool({
      name: "everything.trigger-sampling-request",
      arguments: { prompt: "across replicas", maxTokens: 50 },
    })) as CallToolResult;
    expect(textOf(result)).toContain(
      "the client's model read: Resource trigger-sampling-request context: across replicas",
    );
    expect(answersPosted).toBe(1);
  });
});
