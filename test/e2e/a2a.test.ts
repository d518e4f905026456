import { randomUUID } from "node:crypto";
import { createServer } from "node:http";
import { setTimeout as sleep } from "node:timers/promises";
import { Message, SendMessageRequest, TaskState } from "@a2a-js/sdk";
import { ClientFactory } from "@a2a-js/sdk/client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Loom, startLoom, tokenFor } from "../helpers/loom.ts";
import { freePort } from "../helpers/ports.ts";

const analyst = { serviceParameters: { Authorization: `Bearer ${tokenFor("alice", "analyst")}` } };
const manager = { serviceParameters: { Authorization: `Bearer ${tokenFor("mia", "manager")}` } };

/** A SendMessage request as the SDK's client takes it, built from A2A JSON. */
function send(
  skill: string,
  data: Record<string, unknown>,
  extra: { taskId?: string; returnImmediately?: boolean } = {},
) {
  return SendMessageRequest.fromJSON({
    message: Message.toJSON(
      Message.fromJSON({
        messageId: randomUUID(),
        role: "ROLE_USER",
        parts: [{ data }],
        ...(extra.taskId === undefined ? { metadata: { skill } } : { taskId: extra.taskId }),
      }),
    ),
    ...(extra.returnImmediately ? { configuration: { returnImmediately: true } } : {}),
  });
}

/** A webhook receiver on loopback that keeps what it is sent. */
interface Received {
  body: { statusUpdate?: { taskId: string; status: { state: string } } };
  token: string | undefined;
  authorization: string | undefined;
}

describe("a2a - any A2A client drives Loom workflows over HTTP", () => {
  let loom: Loom;
  let baseUrl: string;
  let hookUrl: string;
  const received: Received[] = [];
  const hooks = createServer((req, res) => {
    let body = "";
    req.on("data", (chunk: Buffer) => {
      body += chunk.toString("utf8");
    });
    req.on("end", () => {
      received.push({
        body: JSON.parse(body),
        token: req.headers["x-a2a-notification-token"] as string | undefined,
        authorization: req.headers.authorization,
      });
      res.writeHead(200).end();
    });
  });
  beforeAll(async () => {
    const [port, hookPort] = [await freePort(), await freePort()];
    baseUrl = `http://127.0.0.1:${port}`;
    hookUrl = `http://127.0.0.1:${hookPort}/hooks/`;
    await new Promise<void>((resolve) => hooks.listen(hookPort, "127.0.0.1", resolve));
    loom = await startLoom({ env: { LOOM_A2A_PORT: String(port), LOOM_A2A_WEBHOOK_ALLOW: hookUrl } });
  });
  afterAll(async () => {
    await loom?.[Symbol.asyncDispose]();
    hooks.close();
  });

  it("a2a - a registered webhook receives every status update, with its token and credentials", async () => {
    const client = await new ClientFactory().createFromUrl(baseUrl);
    const request = SendMessageRequest.fromJSON({
      ...(SendMessageRequest.toJSON(send("hello", { contactId: "c-4" })) as object),
      configuration: {
        taskPushNotificationConfig: {
          url: `${hookUrl}run`,
          token: "hook-token",
          authentication: { scheme: "Bearer", credentials: "hook-secret" },
        },
      },
    });
    const result = await client.sendMessage(request, analyst);
    const taskId = "status" in result ? result.id : "";
    const deadline = Date.now() + 10_000;
    const states = () =>
      received
        .filter((hook) => hook.body.statusUpdate?.taskId === taskId)
        .map((hook) => hook.body.statusUpdate?.status.state);
    while (!states().includes("TASK_STATE_COMPLETED") && Date.now() < deadline) await sleep(100);
    expect(states()).toEqual([
      "TASK_STATE_SUBMITTED",
      "TASK_STATE_WORKING",
      "TASK_STATE_WORKING",
      "TASK_STATE_COMPLETED",
    ]);
    const mine = received.filter((hook) => hook.body.statusUpdate?.taskId === taskId);
    expect(
      mine.every((hook) => hook.token === "hook-token" && hook.authorization === "Bearer hook-secret"),
    ).toBe(true);
  });

  it("a2a - a webhook outside the allow-list is refused (no request into internal addresses)", async () => {
    const client = await new ClientFactory().createFromUrl(baseUrl);
    const request = SendMessageRequest.fromJSON({
      ...(SendMessageRequest.toJSON(send("hello", { contactId: "c-1" })) as object),
      configuration: { taskPushNotificationConfig: { url: "http://10.0.0.1/metadata" } },
    });
    await expect(client.sendMessage(request, analyst)).rejects.toThrow(/not under an allowed prefix/);
  });

  it("a2a - the agent card lists every workflow as a skill, with bearer security and streaming", async () => {
    const client = await new ClientFactory().createFromUrl(baseUrl);
    const card = await client.getAgentCard();
    expect(card.skills.map((skill) => skill.id)).toEqual(
      expect.arrayContaining(["hello", "crm-enrich", "ledger-transfer"]),
    );
    expect(card.capabilities?.streaming).toBe(true);
    expect(Object.keys(card.securitySchemes)).toEqual(["bearer"]);
    expect(card.skills.find((skill) => skill.id === "hello")?.examples).toEqual([
      JSON.stringify({ contactId: "c-1" }),
    ]);
    expect(card.supportedInterfaces.map((iface) => iface.protocolBinding)).toEqual(["JSONRPC", "HTTP+JSON"]);
  });

  it("a2a - a blocking SendMessage runs hello to completion; GetTask and ListTasks find it", async () => {
    const client = await new ClientFactory().createFromUrl(baseUrl);
    const result = await client.sendMessage(send("hello", { contactId: "c-1" }), analyst);
    const task = "status" in result ? result : undefined;
    expect(task?.status?.state).toBe(TaskState.TASK_STATE_COMPLETED);
    const output = task?.artifacts[0]?.parts[0]?.content;
    expect(output?.$case === "data" && output.value.greeting).toBe("Hello, Ada Lovelace");

    const fetched = await client.getTask({ tenant: "", id: task?.id ?? "" }, analyst);
    expect(fetched.status?.state).toBe(TaskState.TASK_STATE_COMPLETED);
    const listed = await client.listTasks(
      {
        tenant: "",
        contextId: task?.contextId ?? "",
        status: 0,
        pageToken: "",
        statusTimestampAfter: undefined,
      },
      analyst,
    );
    expect(listed.tasks.map((listedTask) => listedTask.id)).toContain(task?.id);
  });

  it("a2a - SendStreamingMessage streams the run's status changes to its end", async () => {
    const client = await new ClientFactory().createFromUrl(baseUrl);
    const states: string[] = [];
    for await (const event of client.sendMessageStream(send("hello", { contactId: "c-2" }), analyst)) {
      if (event.payload?.$case === "statusUpdate")
        states.push(TaskState[event.payload.value.status?.state ?? 0] ?? "");
      if (event.payload?.$case === "task")
        states.push(`task:${TaskState[event.payload.value.status?.state ?? 0] ?? ""}`);
    }
    expect(states[0]).toMatch(/^task:/);
    expect(states).toContain("TASK_STATE_WORKING");
    expect(states.at(-1)).toBe("TASK_STATE_COMPLETED");
  });

  it("a2a - a non-blocking SendMessage returns at once, and SubscribeToTask follows the task to its end", async () => {
    const client = await new ClientFactory().createFromUrl(baseUrl);
    const sent = await client.sendMessage(
      send("crm-enrich", { contactId: "c-4" }, { returnImmediately: true }),
      analyst,
    );
    const task = "status" in sent ? sent : undefined;
    expect([TaskState.TASK_STATE_SUBMITTED, TaskState.TASK_STATE_WORKING]).toContain(task?.status?.state);
    const states: number[] = [];
    for await (const event of client.resubscribeTask({ tenant: "", id: task?.id ?? "" }, analyst)) {
      if (event.payload?.$case === "statusUpdate") states.push(event.payload.value.status?.state ?? 0);
    }
    expect(states.at(-1)).toBe(TaskState.TASK_STATE_COMPLETED);
  });

  it("a2a - an approval is answered by a follow-up message on the same task", async () => {
    const client = await new ClientFactory().createFromUrl(baseUrl);
    const waiting = await client.sendMessage(send("crm-enrich", { contactId: "c-2" }), analyst);
    const task = "status" in waiting ? waiting : undefined;
    expect(task?.status?.state).toBe(TaskState.TASK_STATE_INPUT_REQUIRED);
    const answered = await client.sendMessage(
      send("crm-enrich", { approved: true }, { taskId: task?.id ?? "" }),
      manager,
    );
    const done = "status" in answered ? answered : undefined;
    expect(done?.status?.state).toBe(TaskState.TASK_STATE_COMPLETED);
  });

  it("a2a - CancelTask ends a run waiting for approval as canceled", async () => {
    const client = await new ClientFactory().createFromUrl(baseUrl);
    const waiting = await client.sendMessage(send("crm-enrich", { contactId: "c-3" }), analyst);
    const id = "status" in waiting ? waiting.id : "";
    const canceled = await client.cancelTask({ tenant: "", id, metadata: undefined }, analyst);
    expect(canceled.status?.state).toBe(TaskState.TASK_STATE_CANCELED);
  });

  it("a2a - loom agents card prints the card and loom submit --a2a drives the agent over HTTP", async () => {
    const card = await loom.cli(["agents", "card", "--url", baseUrl]);
    expect(card.code).toBe(0);
    expect(JSON.parse(card.stdout).skills.map((skill: { id: string }) => skill.id)).toContain("hello");

    const run = await loom.cli(
      ["submit", "hello", "--a2a", baseUrl, "--input", '{"contactId":"c-2"}', "--watch", "--json"],
      {
        token: tokenFor("alice", "analyst"),
      },
    );
    expect(JSON.parse(run.stdout)).toMatchObject({
      state: "completed",
      output: { greeting: "Hello, Grace Hopper" },
    });
    expect(run.code).toBe(0);
  });

  it("a2a - the HTTP+JSON binding runs hello with plain curl-style requests", async () => {
    const headers = {
      "content-type": "application/json",
      "A2A-Version": "1.0",
      authorization: `Bearer ${tokenFor("alice", "analyst")}`,
    };
    const sent = await fetch(`${baseUrl}/a2a/rest/message:send`, {
      method: "POST",
      headers,
      body: JSON.stringify({
        message: {
          messageId: randomUUID(),
          role: "ROLE_USER",
          parts: [{ data: { contactId: "c-1" } }],
          metadata: { skill: "hello" },
        },
      }),
    });
    expect(sent.status).toBe(200);
    const { task } = (await sent.json()) as { task: { id: string; status: { state: string } } };
    expect(task.status.state).toBe("TASK_STATE_COMPLETED");
    const fetched = await fetch(`${baseUrl}/a2a/rest/tasks/${task.id}`, { headers });
    expect(
      ((await fetched.json()) as { artifacts: Array<{ parts: Array<{ data: { greeting: string } }> }> })
        .artifacts[0]?.parts[0]?.data.greeting,
    ).toBe("Hello, Ada Lovelace");
  });

  it("a2a - a call without a bearer token is refused with 401", async () => {
    const response = await fetch(`${baseUrl}/a2a/jsonrpc`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "GetTask", params: { id: "x" } }),
    });
    expect(response.status).toBe(401);
    expect(response.headers.get("www-authenticate")).toContain("Bearer");
  });

  it("a2a - GetTask for an unknown task is a TaskNotFound error", async () => {
    const client = await new ClientFactory().createFromUrl(baseUrl);
    await expect(client.getTask({ tenant: "", id: "no-such-task" }, analyst)).rejects.toThrow(
      /no run with id no-such-task/,
    );
  });
});
