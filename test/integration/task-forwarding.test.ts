import { randomUUID } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Message, type Task, TaskState } from "../../schemas/a2a.ts";
import { AgentTaskContract } from "../../schemas/contracts.ts";
import { ErrorCode } from "../../schemas/errors.ts";
import { toolTaskInboxOf } from "../../schemas/nats-users.ts";
import { agentTasksSubject, Buckets, Headers, MCP_WORKER_AGENT, Subjects } from "../../schemas/subjects.ts";
import type { TaskIntent } from "../../schemas/task-intent.ts";
import type { Stack } from "../../services/cli/stack.ts";
import {
  createLogger,
  encodeJson,
  MuxedRequests,
  openBucket,
  sendToolTask,
  serve,
} from "../../services/kit/index.ts";
import { NatsUser, type NatsUsersServer, startNatsWithUsers } from "../helpers/nats-users.ts";
import { tokenFor } from "../helpers/tokens.ts";

const log = createLogger({ service: "task-forwarding-test", level: "silent" });

/** time.get_time's intent, as the MCP gateway sends it (the caller's own token, the public subject). */
function intent(): TaskIntent {
  const runId = `mcp-${randomUUID()}`;
  const args = { timezone: "UTC" };
  return {
    decision: {
      action: "tools.call",
      resource: { tool: "time.get_time" },
      arguments: args,
      runId,
      stepId: "s1",
      attempt: 1,
    },
    task: {
      messageId: randomUUID(),
      role: "ROLE_USER",
      taskId: `${runId}:s1:1`,
      contextId: runId,
      parts: [{ data: { server: "time", tool: "get_time", arguments: args } }],
      metadata: { runId, stepId: "s1", attempt: 1 },
    },
  };
}

/**
 * acp-policy alone on a NATS with Loom's users: a tool task's intent is decided there and, on
 * allow, forwarded to whoever serves the worker's subject, which answers the asker directly.
 */
describe("task forwarding - acp-policy decides a tool task and hands it to the worker", () => {
  let nats: NatsUsersServer;
  let stacks: Stack[] = [];
  let logDir: string;
  let orchestrator: NatsConnection;
  let toolTasks: MuxedRequests;
  const analyst = `Bearer ${tokenFor("ann", "analyst")}`;
  const send = (authorization: string | undefined) =>
    sendToolTask(orchestrator, intent(), {
      authorization,
      channel: "public",
      timeoutMs: 20_000,
      inbox: toolTasks,
    });

  beforeAll(async () => {
    nats = await startNatsWithUsers();
    logDir = await mkdtemp(join(tmpdir(), "loom-forwarding-"));
    stacks = await nats.startServices(["acp-policy"], { logDir });
    // The worker's registration of time.get_time, which policy reads the tool's governance from.
    const worker = await nats.connectAs(NatsUser.MCP_WORKER);
    const tools = await openBucket(worker, Buckets.TOOLS, { replicas: 1 });
    await tools.put(
      "time.get_time",
      encodeJson({
        server: "time",
        name: "get_time",
        inputSchema: { type: "object", properties: { timezone: { type: "string" } } },
        governance: { owner: "test", data_classification: "public", access_level: "read" },
        updatedAt: new Date().toISOString(),
      }),
    );
    await worker.close();
    orchestrator = await nats.connectAs(NatsUser.ORCHESTRATOR);
    toolTasks = new MuxedRequests(orchestrator, toolTaskInboxOf(NatsUser.ORCHESTRATOR));
    // acp-policy serves once it answers a malformed decision request with a typed error.
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline) {
      const answered = await orchestrator.request(Subjects.POLICY_DECIDE, "{}", { timeout: 1_000 }).then(
        () => true,
        () => false,
      );
      if (answered) break;
    }
  }, 60_000);
  afterAll(async () => {
    toolTasks?.close();
    await orchestrator?.close();
    await Promise.all(stacks.map((stack) => stack.stop()));
    await nats?.[Symbol.asyncDispose]();
    if (logDir !== undefined) await rm(logDir, { recursive: true, force: true });
  });

  it("task forwarding - with no worker serving, the asker gets AGENT_UNAVAILABLE at once, not at its timeout", async () => {
    const started = Date.now();
    const error = await send(analyst).then(
      () => undefined,
      (failure: { code?: string }) => failure,
    );
    expect(error?.code).toBe(ErrorCode.AGENT_UNAVAILABLE);
    expect(Date.now() - started).toBeLessThan(5_000);
  });

  it("task forwarding - a refused caller is answered by acp-policy, and no task reaches the worker", async () => {
    const seen: Message[] = [];
    const worker = await nats.connectAs(NatsUser.MCP_WORKER);
    const standIn = serve(worker, {
      subject: agentTasksSubject(MCP_WORKER_AGENT),
      contract: AgentTaskContract,
      log,
      forwarded: true,
      handle: async (message) => {
        seen.push(message);
        throw new Error("no task should get here");
      },
    });
    await worker.flush();
    try {
      const error = await send(undefined).then(
        () => undefined,
        (failure: { code?: string }) => failure,
      );
      expect(error?.code).toBe(ErrorCode.UNAUTHENTICATED);
      expect(seen).toEqual([]);
    } finally {
      await standIn.stop();
      await worker.close();
    }
  });

  it("task forwarding - control: an allowed task reaches the worker with its grant and no token, and its answer comes back", async () => {
    const seen: Array<{ message: Message; authorization: string | undefined }> = [];
    const worker = await nats.connectAs(NatsUser.MCP_WORKER);
    const standIn = serve(worker, {
      subject: agentTasksSubject(MCP_WORKER_AGENT),
      contract: AgentTaskContract,
      log,
      forwarded: true,
      handle: async (message, context): Promise<Task> => {
        seen.push({ message, authorization: context.headers?.get(Headers.AUTHORIZATION) || undefined });
        return {
          id: message.taskId ?? "",
          contextId: message.contextId ?? "",
          status: { state: TaskState.COMPLETED, timestamp: new Date().toISOString() },
        };
      },
    });
    await worker.flush();
    try {
      const task = await send(analyst);
      expect(task.status.state).toBe(TaskState.COMPLETED);
      expect(seen).toHaveLength(1);
      expect(seen[0]?.authorization).toBeUndefined();
      expect((seen[0]?.message.metadata as { grant?: string } | undefined)?.grant).toMatch(/^ey/);
    } finally {
      await standIn.stop();
      await worker.close();
    }
  });
});
