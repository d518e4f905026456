import { setTimeout as sleep } from "node:timers/promises";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { describe, expect, it } from "vitest";
import { type Message, type Task, TaskState } from "../../schemas/a2a.ts";
import { AgentTaskContract } from "../../schemas/contracts.ts";
import { toolTaskInboxOf } from "../../schemas/nats-users.ts";
import { RunEventSchema } from "../../schemas/run.ts";
import { agentTasksSubject, Buckets, runEventsSubject } from "../../schemas/subjects.ts";
import type { Workflow } from "../../schemas/workflow.ts";
import {
  createLogger,
  ensureStream,
  MuxedRequests,
  openBucket,
  parsePayload,
  StreamDefinitions,
  serve,
} from "../../services/kit/index.ts";
import { OutboundCredentials } from "../../services/orchestrator/a2a/outbound-credentials.ts";
import { OutboundAllowList, OutboundTargets } from "../../services/orchestrator/a2a/outbound-url.ts";
import { RemoteAgents } from "../../services/orchestrator/a2a/remote-agents.ts";
import { ContextMemoryStore } from "../../services/orchestrator/context-memory.ts";
import { DefinitionStore } from "../../services/orchestrator/definition-store.ts";
import { DEFAULT_EXPRESSION_LIMITS } from "../../services/orchestrator/expressions.ts";
import { ResultStore } from "../../services/orchestrator/result-store.ts";
import { RunEvents } from "../../services/orchestrator/run-events.ts";
import { RunExecution } from "../../services/orchestrator/run-execution.ts";
import { initialState } from "../../services/orchestrator/run-restore.ts";
import { RunStore } from "../../services/orchestrator/run-store.ts";
import { RunTokens } from "../../services/orchestrator/run-tokens.ts";
import { TaskProgressFeed } from "../../services/orchestrator/task-progress.ts";
import { parseWorkflow } from "../../services/orchestrator/workflow-catalog.ts";
import { connectTo, startNatsServer } from "../helpers/nats-server.ts";

const log = createLogger({ service: "run-execution-test", level: "silent" });
const AGENT = "branch-agent";

/**
 * An agent on the bus that answers a run's tasks only once `together` of them have arrived, all at
 * the same moment, and counts every task it is sent by task id.
 */
function answeringTogether(nc: Parameters<typeof serve>[0], together: number) {
  const sent = new Map<string, number>();
  const waiting: Array<() => void> = [];
  const service = serve(nc, {
    subject: agentTasksSubject(AGENT),
    contract: AgentTaskContract,
    log,
    handle: async (message: Message): Promise<Task> => {
      const taskId = message.taskId ?? "";
      sent.set(taskId, (sent.get(taskId) ?? 0) + 1);
      const released = new Promise<void>((resolve) => waiting.push(resolve));
      if (waiting.length >= together) for (const release of waiting.splice(0)) release();
      await released;
      return {
        id: taskId,
        contextId: message.contextId ?? "ctx",
        status: { state: TaskState.COMPLETED, timestamp: new Date().toISOString() },
      };
    },
  });
  return { sent, service };
}

async function setup() {
  const ns = await startNatsServer();
  const url = ns.url;
  const nc = await connectTo(ns.url);
  const jsm = await jetstreamManager(nc);
  await ensureStream(jsm, StreamDefinitions.events, 1);
  const resultsKv = await openBucket(nc, Buckets.RESULTS, { replicas: 1 });
  const runs = new RunStore(
    await openBucket(nc, Buckets.RUNS, { replicas: 1 }),
    new DefinitionStore(resultsKv),
  );
  const runTokens = new RunTokens(await openBucket(nc, Buckets.RUN_TOKENS, { replicas: 1 }));
  const options = {
    nc,
    runs,
    runTokens,
    events: new RunEvents(jetstream(nc)),
    log,
    policyTimeoutMs: 2_000,
    stepTimeoutMs: 10_000,
    elicitationTimeoutMs: 10_000,
    owner: "replica-1",
    leaseMs: 30_000,
    memory: new ContextMemoryStore(
      await openBucket(nc, Buckets.MEMORY, { replicas: 1 }),
      { maxEntries: 10, maxBytes: 65_536 },
      log,
    ),
    remoteAgents: new RemoteAgents({
      credentials: new OutboundCredentials({}),
      allowList: OutboundAllowList.parse(OutboundTargets.DELEGATE, []),
      log,
    }),
    expressionLimits: DEFAULT_EXPRESSION_LIMITS,
    results: new ResultStore(resultsKv, 65_536),
    progress: new TaskProgressFeed(nc, log),
    toolTasks: new MuxedRequests(nc, toolTaskInboxOf("orchestrator")),
  };
  return {
    nc,
    url,
    options,
    async [Symbol.asyncDispose]() {
      options.progress.close();
      options.toolTasks.close();
      await nc.close();
      await ns[Symbol.asyncDispose]();
    },
  };
}

/** Stores a new run of `workflow`, owned by the test's replica, with its run token. */
async function storeRun(env: Awaited<ReturnType<typeof setup>>, runId: string, workflow: Workflow) {
  await env.options.runTokens.keepFirst(runId, "run-token");
  const now = new Date().toISOString();
  const stored = await env.options.runs.create({
    runId,
    contextId: `ctx-${runId}`,
    workflowId: workflow.id,
    definition: workflow,
    input: {},
    state: TaskState.SUBMITTED,
    startedBy: "analyst-1",
    ...initialState(workflow, {}, now),
    owner: env.options.owner,
    leaseUntil: new Date(Date.now() + env.options.leaseMs).toISOString(),
    createdAt: now,
    updatedAt: now,
  });
  if (stored === undefined) throw new Error("the run was not stored");
  return stored;
}

/** Every message published on the server from now on, by subject, in the order it saw them. */
async function tapSubjects(url: string) {
  const tap = await connectTo(url);
  const seen: Array<{ subject: string; data: Uint8Array }> = [];
  tap.subscribe(">", {
    callback: (_error, message) => {
      seen.push({ subject: message.subject, data: message.data });
    },
  });
  await tap.flush();
  return {
    seen,
    async [Symbol.asyncDispose]() {
      await tap.close();
    },
  };
}

describe("run execution - each effect of a run is dispatched once", () => {
  it("run execution - both branches of a parallel answering at once: each branch's task is sent once", async () => {
    await using env = await setup();
    const workflow = parseWorkflow(
      {
        id: "both-at-once",
        steps: [
          {
            id: "both",
            parallel: [
              { id: "left", delegate: { agent: AGENT, message: "left" } },
              { id: "right", delegate: { agent: AGENT, message: "right" } },
            ],
          },
        ],
      },
      "test",
    );
    const agent = answeringTogether(env.nc, 2);
    const runId = "parallel-once";
    const execution = new RunExecution(env.options, await storeRun(env, runId, workflow));
    await execution.start();
    await execution.ended;
    expect((await env.options.runs.get(runId))?.record.state).toBe(TaskState.COMPLETED);
    // Long enough for a second dispatch, were one made, to reach the agent.
    await sleep(300);
    expect(Object.fromEntries(agent.sent)).toEqual({
      [`${runId}:left:1`]: 1,
      [`${runId}:right:1`]: 1,
    });
    await agent.service.stop();
  });
});

describe("run execution - what a step and the run's end publish, and in which order", () => {
  const threeSteps = parseWorkflow(
    {
      id: "three-in-a-row",
      steps: ["a", "b", "c"].map((id) => ({ id, delegate: { agent: AGENT, message: id } })),
      output: "{% $steps.c %}",
    },
    "test",
  );
  const decoder = new TextDecoder();

  /** A server, an agent answering each task at once, a tap on the bus, and run `runId` of three steps. */
  async function threeStepRun(runId: string) {
    const env = await setup();
    const agent = answeringTogether(env.nc, 1);
    const tap = await tapSubjects(env.url);
    const execution = new RunExecution(env.options, await storeRun(env, runId, threeSteps));
    return {
      env,
      tap,
      execution,
      async [Symbol.asyncDispose]() {
        await agent.service.stop();
        await tap[Symbol.asyncDispose]();
        await env[Symbol.asyncDispose]();
      },
    };
  }

  it("run execution - a step's outcome is written, and the next step's start told, before its task goes out", async () => {
    const runId = "three-in-order";
    await using run = await threeStepRun(runId);
    const { tap, execution } = run;
    await execution.start();
    await execution.ended;
    await sleep(200);
    const record = `$KV.${Buckets.RUNS}.${runId}`;
    const events = runEventsSubject(runId);
    const tasks = tap.seen.flatMap((message, index) =>
      message.subject === agentTasksSubject(AGENT) ? [{ index, text: decoder.decode(message.data) }] : [],
    );
    expect(tasks.map((task) => /"taskId":"[^"]*"/.exec(task.text)?.[0])).toEqual(
      ["a", "b", "c"].map((step) => `"taskId":"${runId}:${step}:1"`),
    );
    // Between one step's task and the next: the record with its outcome, then the next start.
    for (const [previous, next] of [
      [tasks[0], tasks[1]],
      [tasks[1], tasks[2]],
    ]) {
      const between = tap.seen
        .slice((previous?.index ?? 0) + 1, next?.index)
        .map((message) => message.subject);
      const written = between.indexOf(record);
      expect(written).toBeGreaterThanOrEqual(0);
      expect(between.indexOf(events, written)).toBeGreaterThan(written);
    }
  });

  it("run execution - the output artifact is told before the end, and the end only once the record says so", async () => {
    const runId = "three-to-the-end";
    await using run = await threeStepRun(runId);
    const { env, tap, execution } = run;
    const recordAtEnd = new Promise<TaskState | undefined>((resolve) => {
      const watch = env.nc.subscribe(runEventsSubject(runId), {
        callback: (_error, message) => {
          const event = parsePayload(RunEventSchema, message.data, "run event");
          if (!("statusUpdate" in event) || event.statusUpdate.status.state !== TaskState.COMPLETED) return;
          watch.unsubscribe();
          void env.options.runs.get(runId).then((stored) => resolve(stored?.record.state));
        },
      });
    });
    await execution.start();
    await execution.ended;
    expect(await recordAtEnd).toBe(TaskState.COMPLETED);
    await sleep(200);
    const told = tap.seen
      .filter((message) => message.subject === runEventsSubject(runId))
      .map((message) => parsePayload(RunEventSchema, message.data, "run event"))
      .map((event) => ("artifactUpdate" in event ? "artifact" : event.statusUpdate.status.state));
    expect(told.slice(-2)).toEqual(["artifact", TaskState.COMPLETED]);
  });

  it("run execution - a finished run is appended to its context's memory with one read and one write", async () => {
    await using env = await setup();
    const agent = answeringTogether(env.nc, 1);
    await using tap = await tapSubjects(env.url);
    const runIds = ["memory-first", "memory-second"];
    for (const runId of runIds) {
      const execution = new RunExecution(env.options, await storeRun(env, runId, threeSteps));
      await execution.start();
      await execution.ended;
      await sleep(200);
    }
    const memory = (runId: string) => tap.seen.filter((message) => message.subject.endsWith(`.ctx-${runId}`));
    for (const runId of runIds) {
      expect(memory(runId).map((message) => message.subject)).toEqual([
        `$JS.API.DIRECT.GET.KV_${Buckets.MEMORY}.$KV.${Buckets.MEMORY}.ctx-${runId}`,
        `$KV.${Buckets.MEMORY}.ctx-${runId}`,
      ]);
      const stored = await env.options.memory.read(`ctx-${runId}`);
      expect(stored?.entries.map((entry) => entry.runId)).toEqual([runId]);
      expect(stored?.owner).toBe("analyst-1");
    }
    await agent.service.stop();
  });
});
