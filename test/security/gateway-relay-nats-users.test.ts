import { randomUUID } from "node:crypto";
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import {
  type CallToolResult,
  CreateMessageRequestSchema,
  ElicitRequestSchema,
} from "@modelcontextprotocol/sdk/types.js";
import { jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Stack, startStack, waitUntilReady } from "../../services/cli/stack.ts";
import { ensureStream, StreamDefinitions } from "../../services/kit/jetstream.ts";
import { REPO_ROOT, tokenFor } from "../helpers/loom.ts";
import { connectTo, type NatsServer, startNatsServer } from "../helpers/nats-server.ts";
import { freePort } from "../helpers/ports.ts";
import { TEST_AUTH_ENV } from "../helpers/tokens.ts";

const CONF = join(REPO_ROOT, "infra/nats/nats-server.conf");
const EVERYTHING = join(REPO_ROOT, "node_modules/@modelcontextprotocol/server-everything/dist/index.js");
const SERVERS = `
servers:
  - name: everything
    transport: { type: stdio, command: node, args: ["${EVERYTHING}", stdio] }
    governance: { owner: mcp-reference, data_classification: public, access_level: read }
`;
const POLICY = `
version: "test"
rules:
  - { name: testers-use-everything, effect: allow, roles: [tester], actions: [tools.call], tools: ["everything.*"] }
  - { name: testers-sample-through-everything, effect: allow, roles: [tester], actions: [llm.sample], tools: [everything] }
`;

function textOf(result: CallToolResult): string {
  return result.content.map((block) => (block.type === "text" ? block.text : "")).join("\n");
}

describe("security - a gateway client's sampling and elicitation under one NATS user per service", () => {
  const password = () => `pw${randomUUID().replaceAll("-", "")}`;
  const passwords = {
    LOOM_NATS_ORCHESTRATOR_PASSWORD: password(),
    LOOM_NATS_ACP_POLICY_PASSWORD: password(),
    LOOM_NATS_MCP_WORKER_PASSWORD: password(),
    LOOM_NATS_LLM_AGENT_PASSWORD: password(),
    LOOM_NATS_SUBMITTER_PASSWORD: password(),
    LOOM_NATS_POLICY_ADMIN_PASSWORD: password(),
  };
  let ns: NatsServer;
  let orchestrator: NatsConnection;
  let dir: string;
  let logDir: string;
  let mcpUrl: URL;
  const stacks: Stack[] = [];
  beforeAll(async () => {
    // The server reads the passwords from its environment, which it inherits from this process.
    Object.assign(process.env, passwords);
    ns = await startNatsServer({ args: ["-c", CONF] });
    orchestrator = await connectTo(ns.url, {
      user: "orchestrator",
      pass: passwords.LOOM_NATS_ORCHESTRATOR_PASSWORD,
    });
    const jsm = await jetstreamManager(orchestrator);
    await ensureStream(jsm, StreamDefinitions.runs);
    await ensureStream(jsm, StreamDefinitions.audit);
    dir = await mkdtemp(join(tmpdir(), "loom-relay-users-"));
    logDir = join(dir, "logs");
    await mkdir(join(dir, "policies"), { recursive: true });
    await mkdir(logDir);
    await writeFile(join(dir, "servers.yaml"), SERVERS);
    await writeFile(join(dir, "policies", "test.yaml"), POLICY);
    const port = await freePort();
    mcpUrl = new URL(`http://127.0.0.1:${port}/mcp`);
    const as = (user: string, secret: string) => ns.url.replace("nats://", `nats://${user}:${secret}@`);
    for (const [service, secret] of [
      ["acp-policy", passwords.LOOM_NATS_ACP_POLICY_PASSWORD],
      ["mcp-worker", passwords.LOOM_NATS_MCP_WORKER_PASSWORD],
      ["llm-agent", passwords.LOOM_NATS_LLM_AGENT_PASSWORD],
      ["orchestrator", passwords.LOOM_NATS_ORCHESTRATOR_PASSWORD],
    ] as const) {
      stacks.push(
        await startStack({
          natsUrl: as(service, secret),
          logDir,
          services: [service],
          env: {
            ...TEST_AUTH_ENV,
            LOOM_HTTP_PORT: "0",
            LOOM_A2A_PORT: String(port),
            LOOM_MCP_SERVERS: join(dir, "servers.yaml"),
            LOOM_POLICY_DIR: join(dir, "policies"),
            OTEL_TRACES_EXPORTER: "none",
          },
        }),
      );
    }
    await waitUntilReady(orchestrator, {
      tools: ["everything.trigger-sampling-request", "everything.trigger-elicitation-request"],
      timeoutMs: 30_000,
    });
  });
  afterAll(async () => {
    await Promise.all(stacks.map((stack) => stack.stop()));
    await orchestrator?.close();
    await ns?.[Symbol.asyncDispose]();
    await rm(dir, { recursive: true, force: true });
  });

  it("nats - the worker hands the server's requests to the gateway, which asks its client, with no permission violation", async () => {
    const client = new Client(
      { name: "relay-users-test", version: "1.0.0" },
      { capabilities: { sampling: {}, elicitation: {} } },
    );
    client.setRequestHandler(CreateMessageRequestSchema, () => ({
      model: "client-own-model",
      role: "assistant",
      content: { type: "text", text: "sampled by the client" },
    }));
    client.setRequestHandler(ElicitRequestSchema, () => ({ action: "accept", content: { name: "Grace" } }));
    await client.connect(
      new StreamableHTTPClientTransport(mcpUrl, {
        requestInit: { headers: { Authorization: `Bearer ${tokenFor("tess", "tester")}` } },
      }),
    );
    try {
      const sampled = (await client.callTool({
        name: "everything.trigger-sampling-request",
        arguments: { prompt: "hi", maxTokens: 10 },
      })) as CallToolResult;
      expect(textOf(sampled)).toContain("sampled by the client");
      const elicited = (await client.callTool({
        name: "everything.trigger-elicitation-request",
        arguments: {},
      })) as CallToolResult;
      expect(textOf(elicited)).toContain("- Name: Grace");
    } finally {
      await client.close();
    }
    const logs = await Promise.all(
      (await readdir(logDir)).map((name) => readFile(join(logDir, name), "utf8")),
    );
    expect(logs.join("\n")).not.toMatch(/Permissions Violation/i);
  });
});
