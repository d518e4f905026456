import { setTimeout as sleep } from "node:timers/promises";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { describe, expect, it } from "vitest";
import { type Message, type Task, TaskState } from "../../schemas/a2a.ts";
import { AgentTaskContract } from "../../schemas/contracts.ts";
import { toolTaskInboxOf } from "../../schemas/nats-users.ts";
import { agentTasksSubject, Buckets } from "../../schemas/subjects.ts";
import {
  createLogger,
  ensureStream,
  MuxedRequests,
  openBucket,
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
    options,
    async [Symbol.asyncDispose]() {
      options.progress.close();
      options.toolTasks.close();
      await nc.close();
      await ns[Symbol.asyncDispose]();
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
    await env.options.runTokens.keepFirst(runId, "run-token");
    const now = new Date().toISOString();
    const stored = await env.options.runs.create({
      runId,
      contextId: "ctx",
      workflowId: workflow.id,
      definition: workflow,
      input: {},
      state: TaskState.SUBMITTED,
      ...initialState(workflow, {}, new Date().toISOString()),
      owner: env.options.owner,
      leaseUntil: new Date(Date.now() + env.options.leaseMs).toISOString(),
      createdAt: now,
      updatedAt: now,
    });
    if (stored === undefined) throw new Error("the run was not stored");
    const execution = new RunExecution(env.options, stored);
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
