import { mkdir, rm } from "node:fs/promises";
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
import { type Stack, waitUntilReady } from "../../services/cli/stack.ts";
import { ensureStream, StreamDefinitions } from "../../services/kit/jetstream.ts";
import { writeEverythingConfig } from "../helpers/everything-config.ts";
import { tokenFor } from "../helpers/loom.ts";
import { type NatsUsersServer, serviceLogs, startNatsWithUsers } from "../helpers/nats-users.ts";
import { freePort } from "../helpers/ports.ts";

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
  let nats: NatsUsersServer;
  let orchestrator: NatsConnection;
  let dir: string;
  let logDir: string;
  let mcpUrl: URL;
  const stacks: Stack[] = [];
  beforeAll(async () => {
    nats = await startNatsWithUsers();
    orchestrator = await nats.connectAs("orchestrator");
    await ensureStream(await jetstreamManager(orchestrator), StreamDefinitions.runs, 1);
    // The orchestrator writes no audit records and may not create LOOM_AUDIT; a worker may.
    const worker = await nats.connectAs("mcp-worker");
    await ensureStream(await jetstreamManager(worker), StreamDefinitions.audit, 1);
    await worker.close();
    const config = await writeEverythingConfig("loom-relay-users-", { policy: POLICY });
    dir = config.dir;
    logDir = join(dir, "logs");
    await mkdir(logDir);
    const port = await freePort();
    mcpUrl = new URL(`http://127.0.0.1:${port}/mcp`);
    stacks.push(
      ...(await nats.startServices(["acp-policy", "mcp-worker", "llm-agent", "orchestrator"], {
        logDir,
        env: {
          LOOM_A2A_PORT: String(port),
          ...config.env,
          OTEL_TRACES_EXPORTER: "none",
        },
      })),
    );
    await waitUntilReady(orchestrator, {
      tools: ["everything.trigger-sampling-request", "everything.trigger-elicitation-request"],
      timeoutMs: 30_000,
    });
  });
  afterAll(async () => {
    await Promise.all(stacks.map((stack) => stack.stop()));
    await orchestrator?.close();
    await nats?.[Symbol.asyncDispose]();
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
    expect(await serviceLogs(logDir)).not.toMatch(/Permissions Violation/i);
  });
});
