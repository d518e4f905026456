import { execFile } from "node:child_process";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { promisify } from "node:util";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import {
  type LoggingMessageNotification,
  LoggingMessageNotificationSchema,
  type Progress,
} from "@modelcontextprotocol/sdk/types.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  agentCancelSubject,
  agentTasksSubject,
  MCP_WORKER_AGENT,
  taskNotificationsSubject,
} from "../../schemas/subjects.ts";
import { encodeJson } from "../../services/kit/index.ts";
import { type GatewayStack, startGateway } from "../helpers/gateway.ts";
import { type Loom, NatsUser, REPO_ROOT, tokenFor } from "../helpers/loom.ts";
import { signJwt, TEST_ISSUER, validClaims } from "../helpers/tokens.ts";

const run = promisify(execFile);
const INSPECTOR = join(REPO_ROOT, "node_modules/.bin/mcp-inspector-cli");
const viewer = tokenFor("vera", "viewer");
const admin = tokenFor("ann", "admin");

describe("mcp gateway - any MCP client reaches every server's tools through policy", () => {
  let gateway: GatewayStack;
  let loom: Loom;
  let base: string;
  let mcpUrl: URL;
  beforeAll(async () => {
    gateway = await startGateway({
      prefix: "loom-gateway-",
      servers: ["time", "crm", "everything"],
      tools: ["time.get_time", "crm.get_contact", "everything.echo"],
    });
    ({ loom, base, mcpUrl } = gateway);
  });
  afterAll(async () => {
    await gateway?.[Symbol.asyncDispose]();
  });
  const open = async (token: string, sessionId?: string) =>
    (await gateway.session(token, sessionId === undefined ? {} : { sessionId })).client;

  it("auth - without a token: 401 pointing to the protected resource metadata, which is served", async () => {
    const response = await fetch(mcpUrl, {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json, text/event-stream" },
      body: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "tools/list" }),
    });
    expect(response.status).toBe(401);
    const challenge = response.headers.get("www-authenticate") ?? "";
    const metadataUrl = /resource_metadata="([^"]+)"/.exec(challenge)?.[1];
    expect(metadataUrl).toBe(`${base}/.well-known/oauth-protected-resource/mcp`);
    const metadata = await (await fetch(metadataUrl ?? "")).json();
    expect(metadata).toMatchObject({ resource: `${base}/mcp`, authorization_servers: [TEST_ISSUER] });
    const root = (await (await fetch(`${base}/.well-known/oauth-protected-resource`)).json()) as {
      resource: string;
    };
    expect(root.resource).toBe(`${base}/mcp`);
  });

  it("auth - a token acp-policy refuses (wrong audience) gets 401 invalid_token", async () => {
    const otherAudience = signJwt(validClaims("mallory", ["admin"], { aud: "someone-else" }));
    const response = await fetch(mcpUrl, {
      method: "POST",
      headers: {
        Authorization: `Bearer ${otherAudience}`,
        "Content-Type": "application/json",
        Accept: "application/json, text/event-stream",
      },
      body: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "tools/list" }),
    });
    expect(response.status).toBe(401);
    expect(response.headers.get("www-authenticate")).toMatch(/error="invalid_token".*aud/);
  });

  it("origin - a request from a foreign web origin is refused with 403", async () => {
    const response = await fetch(mcpUrl, {
      method: "POST",
      headers: {
        Authorization: `Bearer ${admin}`,
        Origin: "http://evil.example",
        "Content-Type": "application/json",
        Accept: "application/json, text/event-stream",
      },
      body: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "tools/list" }),
    });
    expect(response.status).toBe(403);
  });

  it("transport - a body that is not JSON gets a JSON-RPC parse error; GET needs a session", async () => {
    const headers = {
      Authorization: `Bearer ${admin}`,
      "Content-Type": "application/json",
      Accept: "application/json, text/event-stream",
    };
    const garbled = await fetch(mcpUrl, { method: "POST", headers, body: "{not json" });
    expect(garbled.status).toBe(400);
    expect(await garbled.json()).toMatchObject({ jsonrpc: "2.0", error: { code: -32700 } });
    const stream = await fetch(mcpUrl, { headers: { ...headers, Accept: "text/event-stream" } });
    expect(stream.status).toBe(400);
    const unknown = await fetch(mcpUrl, {
      headers: {
        ...headers,
        Accept: "text/event-stream",
        "Mcp-Session-Id": "00000000-0000-4000-8000-000000000000",
      },
    });
    expect(unknown.status).toBe(404);
  });

  it("tools/list - shows a viewer only what policy lets it call, an admin everything", async () => {
    const asViewer = (await (await open(viewer)).listTools()).tools.map((tool) => tool.name);
    expect(asViewer).toEqual(expect.arrayContaining(["crm.get_contact", "time.get_time"]));
    expect(asViewer).not.toContain("crm.delete_record");
    expect(asViewer).not.toContain("everything.echo");
    const asAdmin = (await (await open(admin)).listTools()).tools.map((tool) => tool.name);
    expect(asAdmin).toEqual(
      expect.arrayContaining(["crm.delete_record", "everything.echo", "time.get_time"]),
    );
  });

  it("tools/call - runs through policy with masking, the token stays out of the worker's task, a denied call names the rule", async () => {
    const client = await open(viewer);
    const tasks = loom.observer.subscribe(agentTasksSubject(MCP_WORKER_AGENT), { max: 1 });
    const contact = await client.callTool({ name: "crm.get_contact", arguments: { id: "c-1" } });
    for await (const task of tasks) {
      expect(task.headers?.get("Authorization") ?? "").toBe("");
      expect(task.string()).not.toContain(viewer);
      expect(task.json()).toMatchObject({ metadata: { grant: expect.any(String) } });
    }
    expect(contact.isError).toBeFalsy();
    expect(contact.structuredContent).toMatchObject({ id: "c-1", name: "Ada Lovelace" });
    expect(JSON.stringify(contact)).not.toContain("ada@example.com");
    const denied = await client.callTool({ name: "crm.delete_record", arguments: { id: "c-1" } });
    expect(denied.isError).toBe(true);
    expect(JSON.stringify(denied.content)).toContain("only-admins-delete");
  });

  it("resources - a viewer sees no CRM resources and reading one is refused naming the rule", async () => {
    const client = await open(viewer);
    expect((await client.listResources()).resources.map((resource) => resource.uri)).not.toContain(
      "crm://contacts/c-1",
    );
    await expect(client.readResource({ uri: "crm://contacts/c-1" })).rejects.toThrow(/default-deny/);
  });

  it("resources, prompts, completions - read, rendered and completed through the worker", async () => {
    const client = await open(admin);
    const resources = (await client.listResources()).resources.map((resource) => resource.uri);
    expect(resources).toContain("crm://contacts/c-1");
    const read = await client.readResource({ uri: "crm://contacts/c-2" });
    expect(read.contents[0]).toMatchObject({ uri: "crm://contacts/c-2", mimeType: "application/json" });
    const content = read.contents[0];
    expect(JSON.parse(content !== undefined && "text" in content ? content.text : "")).toMatchObject({
      name: "Grace Hopper",
    });
    const templates = (await client.listResourceTemplates()).resourceTemplates.map((t) => t.uriTemplate);
    expect(templates).toContain("crm://contacts/{id}");
    const prompts = (await client.listPrompts()).prompts.map((prompt) => prompt.name);
    expect(prompts).toEqual(expect.arrayContaining(["crm.summarize", "everything.completable-prompt"]));
    const prompt = await client.getPrompt({
      name: "crm.summarize",
      arguments: { text: "Loom", length: "5" },
    });
    expect(prompt.messages[0]?.content).toMatchObject({
      type: "text",
      text: expect.stringContaining("at most 5 words"),
    });
    const completion = await client.complete({
      ref: { type: "ref/prompt", name: "everything.completable-prompt" },
      argument: { name: "department", value: "Eng" },
    });
    expect(completion.completion.values).toEqual(["Engineering"]);
  });

  it("progress and logging - what the worker publishes about a call reaches the client, logs from the session's level up", async () => {
    const client = await open(admin);
    const logs: LoggingMessageNotification["params"][] = [];
    client.setNotificationHandler(LoggingMessageNotificationSchema, (notification) => {
      logs.push(notification.params);
    });
    await client.setLoggingLevel("warning");
    const tasks = loom.observer.subscribe(agentTasksSubject(MCP_WORKER_AGENT), { max: 1 });
    // What the worker would publish about the call, published as the worker.
    const worker = await loom.connectAs(NatsUser.MCP_WORKER);
    const progress: Progress[] = [];
    const call = client.callTool(
      { name: "everything.trigger-long-running-operation", arguments: { duration: 2, steps: 2 } },
      undefined,
      { onprogress: (update) => progress.push(update), timeout: 20_000 },
    );
    for await (const message of tasks) {
      const taskId = (message.json() as { taskId: string }).taskId;
      for (const notification of [
        { kind: "progress", taskId, progress: 1, total: 2, message: "halfway" },
        { kind: "log", taskId, level: "info", data: "too chatty for this session" },
        { kind: "log", taskId, level: "error", logger: "upstream", data: "disk almost full" },
      ]) {
        worker.publish(taskNotificationsSubject(taskId), encodeJson(notification));
      }
    }
    const result = await call;
    expect(result.isError).toBeFalsy();
    expect(progress).toContainEqual(expect.objectContaining({ progress: 1, total: 2, message: "halfway" }));
    expect(logs).toContainEqual({ level: "error", logger: "upstream", data: "disk almost full" });
    expect(logs.map((log) => log.data)).not.toContain("too chatty for this session");
  });

  it("cancellation - a client that cancels a call makes the worker abandon its task", async () => {
    const client = await open(admin);
    const tasks = loom.observer.subscribe(agentTasksSubject(MCP_WORKER_AGENT), { max: 1 });
    const cancels = loom.observer.subscribe(agentCancelSubject(MCP_WORKER_AGENT), {
      max: 1,
      timeout: 10_000,
    });
    const abort = new AbortController();
    const call = client.callTool(
      { name: "everything.trigger-long-running-operation", arguments: { duration: 15, steps: 3 } },
      undefined,
      { signal: abort.signal, timeout: 20_000 },
    );
    let taskId = "";
    for await (const message of tasks) taskId = (message.json() as { taskId: string }).taskId;
    abort.abort("the user changed their mind");
    await expect(call).rejects.toThrow();
    for await (const message of cancels) expect(message.json()).toEqual({ taskId });
  });

  it("sessions - a session opened before an orchestrator restart goes on after it; an unknown one is 404, another caller's 403", async () => {
    const first = await open(admin);
    await first.listTools();
    const transport = first.transport as StreamableHTTPClientTransport;
    const sessionId = transport.sessionId ?? "";
    expect(sessionId).not.toBe("");
    await loom.stack.restart("orchestrator");
    await untilServing(base);
    // A client that never talked to the new process, with the old session id.
    const tools = await listOverSession(mcpUrl, admin, sessionId);
    expect(tools).toContain("crm.delete_record");
    const unknown = await fetch(mcpUrl, {
      method: "POST",
      headers: {
        Authorization: `Bearer ${admin}`,
        "Mcp-Session-Id": "00000000-0000-4000-8000-000000000000",
        "Content-Type": "application/json",
        Accept: "application/json, text/event-stream",
      },
      body: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "tools/list" }),
    });
    expect(unknown.status).toBe(404);
    const stolen = await fetch(mcpUrl, {
      method: "POST",
      headers: {
        Authorization: `Bearer ${viewer}`,
        "Mcp-Session-Id": sessionId,
        "Content-Type": "application/json",
        Accept: "application/json, text/event-stream",
      },
      body: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "tools/list" }),
    });
    expect(stolen.status).toBe(403);
  });

  it("audit - a gateway call is in the audit trail, decided and executed, under its session", async () => {
    const client = await open(viewer);
    await client.callTool({ name: "time.get_time", arguments: {} });
    const sessionId = (client.transport as StreamableHTTPClientTransport).sessionId;
    const { stdout } = await loom.cli(["audit", "tail", "--run", `mcp-${sessionId}`, "--json"]);
    const records = stdout
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line));
    expect(records).toContainEqual(
      expect.objectContaining({
        kind: "policy.decision",
        principal: "vera",
        resource: "time.get_time",
        effect: "allow",
      }),
    );
    expect(records).toContainEqual(
      expect.objectContaining({
        kind: "tool.execution",
        principal: "vera",
        resource: "time.get_time",
        outcome: "ok",
      }),
    );
  });

  it("inspector - MCP Inspector's CLI lists and calls tools through the gateway with a token", async () => {
    const inspect = (args: string[]) =>
      run(
        INSPECTOR,
        ["--cli", mcpUrl.href, "--transport", "http", "--header", `Authorization: Bearer ${admin}`, ...args],
        {
          // inspector-cli 1.0.3 checks for its package.json at "../package.json" from the working
          // directory but imports it relative to itself: a folder one level below a package.json
          // (here test/, below the repo's) makes the two agree.
          cwd: join(REPO_ROOT, "test"),
          timeout: 30_000,
        },
      );
    const listed = JSON.parse((await inspect(["--method", "tools/list"])).stdout);
    expect(listed.tools.map((tool: { name: string }) => tool.name)).toContain("everything.echo");
    const called = JSON.parse(
      (
        await inspect([
          "--method",
          "tools/call",
          "--tool-name",
          "everything.echo",
          "--tool-arg",
          "message=hi",
        ])
      ).stdout,
    );
    expect(JSON.stringify(called.content)).toContain("hi");
  });
});

/** Waits until the (restarted) orchestrator's HTTP edge answers. */
async function untilServing(base: string): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    const up = await fetch(`${base}/.well-known/oauth-protected-resource`).then(
      (response) => response.ok,
      () => false,
    );
    if (up) return;
    await sleep(200);
  }
  throw new Error(`nothing serves ${base} after the restart`);
}

/** tools/list on an existing session through a bare transport (no initialize: the session exists). */
async function listOverSession(url: URL, token: string, sessionId: string): Promise<string[]> {
  const transport = new StreamableHTTPClientTransport(url, {
    requestInit: { headers: { Authorization: `Bearer ${token}` } },
    sessionId,
  });
  const { promise, resolve, reject } = Promise.withResolvers<string[]>();
  transport.onmessage = (message) => {
    if ("result" in message)
      resolve((message.result as { tools: { name: string }[] }).tools.map((t) => t.name));
    if ("error" in message) reject(new Error(message.error.message));
  };
  transport.onerror = reject;
  await transport.start();
  try {
    await transport.send({ jsonrpc: "2.0", id: 1, method: "tools/list" });
    return await promise;
  } finally {
    await transport.close();
  }
}
