import { randomUUID } from "node:crypto";
import { jetstream } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { type Msg, type NatsConnection, headers as natsHeaders } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Role, TaskState } from "../../schemas/a2a.ts";
import { AgentTaskContract, WorkflowApplyContract, WorkflowGraphContract } from "../../schemas/contracts.ts";
import { ErrorCode, WireErrorSchema } from "../../schemas/errors.ts";
import {
  agentCancelSubject,
  agentTasksSubject,
  Buckets,
  Headers,
  LLM_AGENT,
  MCP_WORKER_AGENT,
  Subjects,
} from "../../schemas/subjects.ts";
import type { ServiceName } from "../../services/cli/stack.ts";
import { followRun, type LoomError, MAX_ERROR_BYTES, request, watchRun } from "../../services/kit/index.ts";
import { DEFAULT_LIMITS } from "../../services/orchestrator/limits.ts";
import { AttackClass, attack, control } from "../helpers/attack-tally.ts";
import { type Loom, NatsUser, startLoom, tokenFor } from "../helpers/loom.ts";
import { permissionViolations } from "../helpers/nats-users.ts";
import { type RunActors, type RunOutcome, submitAndWatch } from "../helpers/runs.ts";

const viewer = tokenFor("vic", "viewer");
/** How long a normal run may take after an attack (the machine is shared and loaded). */
const NORMAL_RUN_BOUND_MS = 20_000;
/** How soon an expression attack must be cut off, end to end. */
const CUT_OFF_MS = 5_000;

const calls = (count: number) =>
  Array.from({ length: count }, (_, index) => ({ id: `s${index}`, call: "time.get_time" }));

/** An inline workflow whose output is `expression`, after one real step. */
const withOutput = (expression: string) => ({
  id: "dos",
  steps: [{ id: "now", call: "time.get_time" }],
  output: `{% ${expression} %}`,
});

const limitRefusal = (outcome: RunOutcome, limit: string) =>
  outcome.state === TaskState.FAILED &&
  outcome.error?.code === ErrorCode.LIMIT_EXCEEDED &&
  outcome.error.details?.limit === limit;

const rejection = (promise: Promise<unknown>): Promise<LoomError | undefined> =>
  promise.then(
    () => undefined,
    (error: LoomError) => error,
  );

const task = (taskId: string, data: Record<string, unknown> = { contactId: "c-1" }) => ({
  messageId: randomUUID(),
  taskId,
  role: Role.USER,
  parts: [{ data }],
});

describe("security - denial of service and bad messages against a running stack", () => {
  let loom: Loom;
  let pids: Map<ServiceName, number | undefined>;
  /** Each message goes as a user NATS lets publish it, so that it reaches the handler. */
  let runs: RunActors;
  /** Agent tasks and cancels: the orchestrator's user, the strongest insider on those subjects. */
  let orchestrator: NatsConnection;
  /** acp-policy's user: the one that forwards granted tool tasks to the worker. */
  let forwarder: NatsConnection;
  /** Submissions and graph requests: what any caller may send. */
  let submitter: NatsConnection;
  /** Workflow applies. */
  let policyAdmin: NatsConnection;
  let violations: (() => Promise<readonly string[]>)[];

  beforeAll(async () => {
    loom = await startLoom();
    pids = new Map(loom.stack.services.map((service) => [service.name, service.process.pid]));
    orchestrator = await loom.connectAs(NatsUser.ORCHESTRATOR);
    forwarder = await loom.connectAs(NatsUser.ACP_POLICY);
    submitter = await loom.connectAs(NatsUser.SUBMITTER);
    policyAdmin = await loom.connectAs(NatsUser.POLICY_ADMIN);
    violations = [orchestrator, submitter, policyAdmin].map(permissionViolations);
    runs = { submitter, observer: loom.observer };
  });
  afterAll(async () => {
    await loom?.[Symbol.asyncDispose]();
  });

  /** Every service runs with the pid it started with. */
  const allAlive = () =>
    loom.stack.services.every(
      (service) =>
        pids.get(service.name) === service.process.pid &&
        service.process.exitCode === null &&
        service.process.signalCode === null,
    );

  const aNormalRunCompletes = (after: string) =>
    control(`after ${after}: a viewer's hello run completes within ${NORMAL_RUN_BOUND_MS} ms`, async () => {
      const outcome = await submitAndWatch(runs, {
        workflow: "hello",
        input: { contactId: "c-1" },
        token: viewer,
        timeoutMs: NORMAL_RUN_BOUND_MS,
      });
      return outcome.state === TaskState.COMPLETED && allAlive();
    });

  const inline = (workflow: unknown, input: Record<string, unknown> = {}) =>
    submitAndWatch(runs, { workflow, input, token: viewer });

  it("dos - a viewer's huge JSONata range is cut off at once with LIMIT_EXCEEDED", async () => {
    await attack(AttackClass.DENIAL_OF_SERVICE, "a viewer's $count([1..1500000].($*2))", async () => {
      const outcome = await inline(withOutput("$count([1..1500000].($*2))"));
      return limitRefusal(outcome, "LOOM_EXPRESSION_MAX_SEQUENCE") && outcome.ms < CUT_OFF_MS;
    });
    await aNormalRunCompletes("a huge range");
  });

  it("dos - deep recursion in an expression stops at the depth limit", async () => {
    await attack(AttackClass.DENIAL_OF_SERVICE, "unbounded non-tail recursion in an expression", async () => {
      const outcome = await inline(withOutput("($f := function($n) { 1 + $f($n + 1) }; $f(0))"));
      return limitRefusal(outcome, "LOOM_EXPRESSION_MAX_DEPTH") && outcome.ms < CUT_OFF_MS;
    });
    await aNormalRunCompletes("deep recursion");
  });

  it("dos - an endless loop in an expression stops at the time limit", async () => {
    await attack(
      AttackClass.DENIAL_OF_SERVICE,
      "an endless tail-recursive loop in an expression",
      async () => {
        const outcome = await inline(withOutput("($f := function($n) { $f($n + 1) }; $f(0))"));
        return limitRefusal(outcome, "LOOM_EXPRESSION_TIMEOUT_MS") && outcome.ms < CUT_OFF_MS;
      },
    );
    await aNormalRunCompletes("an endless loop");
  });

  it("dos - an expression returning a 500 KB string is refused", async () => {
    await attack(AttackClass.DENIAL_OF_SERVICE, "an expression returning 500 KB", async () =>
      limitRefusal(await inline(withOutput('$pad("", 500000, "x")')), "LOOM_EXPRESSION_MAX_RESULT_BYTES"),
    );
    await aNormalRunCompletes("a 500 KB expression result");
  });

  it("dos - a $pad to 400 million characters is refused before it builds the string", async () => {
    await attack(
      AttackClass.DENIAL_OF_SERVICE,
      "$pad of a 1 MB string to 400,000,000 characters",
      async () => {
        const outcome = await inline(withOutput("$length($pad($pad('', 1000000, 'x'), 400000000, 'y'))"));
        return limitRefusal(outcome, "LOOM_EXPRESSION_MAX_VALUE") && outcome.ms < CUT_OFF_MS;
      },
    );
    await control("$pad within the limit still pads, to the right and to the left", async () => {
      const outcome = await inline(withOutput("$pad('ab', 5, '-') & '|' & $pad('ab', -4, 'xy')"));
      return outcome.state === TaskState.COMPLETED && JSON.stringify(outcome.output) === '"ab---|xyab"';
    });
    await aNormalRunCompletes("a 400 million character $pad");
  });

  it("dos - an output put together from expressions each within the limit is refused when the whole is over", async () => {
    await attack(AttackClass.DENIAL_OF_SERVICE, "two 200 KB expressions in one run output", async () => {
      const workflow = {
        id: "fat-output",
        steps: [{ id: "now", call: "time.get_time" }],
        output: { a: '{% $pad("", 200000, "x") %}', b: '{% $pad("", 200000, "y") %}' },
      };
      return limitRefusal(await inline(workflow), "LOOM_EXPRESSION_MAX_RESULT_BYTES");
    });
    await aNormalRunCompletes("a 400 KB output");
  });

  it("dos - a 1,500-step inline workflow is refused before it runs", async () => {
    await attack(AttackClass.DENIAL_OF_SERVICE, "a 1,500-step inline workflow", async () => {
      const outcome = await inline({ id: "wide", steps: calls(1_500) });
      return (
        limitRefusal(outcome, "LOOM_MAX_STEPS") &&
        outcome.error?.details?.value === 1_500 &&
        outcome.error.details.max === DEFAULT_LIMITS.maxSteps
      );
    });
    await aNormalRunCompletes("a 1,500-step workflow");
  });

  it("dos - a 1,500-step workflow cannot be registered either", async () => {
    await attack(AttackClass.DENIAL_OF_SERVICE, "workflow apply of 1,500 steps", async () => {
      const error = await rejection(
        request(
          policyAdmin,
          Subjects.WORKFLOWS_APPLY,
          WorkflowApplyContract,
          { definition: { id: "wide", steps: calls(1_500) } },
          { timeoutMs: 10_000, headers: { [Headers.AUTHORIZATION]: `Bearer ${viewer}` } },
        ),
      );
      return error?.code === ErrorCode.LIMIT_EXCEEDED && error.details?.limit === "LOOM_MAX_STEPS";
    });
    await aNormalRunCompletes("a 1,500-step apply");
  });

  it("dos - a 200 KB run input is refused naming LOOM_MAX_INPUT_BYTES", async () => {
    await attack(AttackClass.DENIAL_OF_SERVICE, "a 200 KB run input", async () =>
      limitRefusal(
        await submitAndWatch(runs, {
          workflow: "hello",
          input: { contactId: "c-1", pad: "x".repeat(200_000) },
          token: viewer,
        }),
        "LOOM_MAX_INPUT_BYTES",
      ),
    );
    await aNormalRunCompletes("an oversized input");
  });

  it("dos - a 300 KB definition is refused naming LOOM_MAX_DEFINITION_BYTES", async () => {
    await attack(AttackClass.DENIAL_OF_SERVICE, "a 300 KB inline definition", async () =>
      limitRefusal(
        await inline({ id: "fat", description: "x".repeat(300_000), steps: calls(1) }),
        "LOOM_MAX_DEFINITION_BYTES",
      ),
    );
    await aNormalRunCompletes("an oversized definition");
  });

  it("dos - a 240 KB workflows.graph request gets a typed error that fits a reply", async () => {
    await attack(AttackClass.DENIAL_OF_SERVICE, "a 240 KB graph request full of mistakes", async () => {
      // Thousands of broken steps: the list of what is wrong alone is larger than a reply may be.
      const steps = Array.from({ length: 7_600 }, (_, index) => ({ id: `bad step ${index}`, call: 7 }));
      const body = JSON.stringify({ workflow: { id: "graph", steps } });
      const reply = await submitter.request(Subjects.WORKFLOWS_GRAPH, body, { timeout: 10_000 });
      const error = WireErrorSchema.safeParse(reply.json());
      return (
        body.length > 240_000 &&
        reply.headers?.get(Headers.ERROR) !== undefined &&
        error.success &&
        reply.data.byteLength <= MAX_ERROR_BYTES &&
        allAlive()
      );
    });
    await control("a graph of a registered workflow still renders", async () => {
      const graph = await request(
        submitter,
        Subjects.WORKFLOWS_GRAPH,
        WorkflowGraphContract,
        { workflow: "hello" },
        { timeoutMs: 10_000 },
      );
      return graph.mermaid.includes("contact");
    });
    await aNormalRunCompletes("an oversized graph request");
  });

  it("dos - a task near max_payload to each agent gets an answer and no agent dies", async () => {
    const maxPayload = orchestrator.info?.max_payload ?? 1_048_576;
    for (const agent of [MCP_WORKER_AGENT, LLM_AGENT, "wf-hello"]) {
      await attack(
        AttackClass.DENIAL_OF_SERVICE,
        `a task of ${maxPayload - 8_192} bytes to ${agent}`,
        async () => {
          const body = JSON.stringify(task(`big-${randomUUID()}`, { pad: "x".repeat(maxPayload - 8_192) }));
          // Tool tasks reach the worker only as acp-policy forwards them.
          const sender = agent === MCP_WORKER_AGENT ? forwarder : orchestrator;
          const reply = await sender.request(agentTasksSubject(agent), body, { timeout: 20_000 });
          return reply.data.byteLength <= maxPayload && answered(reply) && allAlive();
        },
      );
    }
    await aNormalRunCompletes("oversized agent tasks");
  });

  it("dos - a run's record names its definition instead of carrying it, so writes do not grow with it", async () => {
    await attack(
      AttackClass.DENIAL_OF_SERVICE,
      "a 200 KB definition rewritten at every transition",
      async () => {
        const outcome = await inline({ id: "fat-ok", description: "x".repeat(200_000), steps: calls(3) });
        const entry = await (await new Kvm(loom.observer).open(Buckets.RUNS)).get(outcome.runId);
        const record = entry?.json<Record<string, unknown>>();
        return (
          outcome.state === TaskState.COMPLETED &&
          entry !== null &&
          entry.length < 16 * 1024 &&
          record?.definition === undefined &&
          typeof record?.definitionRef === "string"
        );
      },
    );
    await aNormalRunCompletes("a fat definition");
  });

  it("bad messages - `not json` on a workflow agent's cancel subject leaves the orchestrator taking runs", async () => {
    await attack(AttackClass.BAD_MESSAGES, "`not json` on loom.v1.agents.wf-hello.cancel", async () => {
      orchestrator.publish(agentCancelSubject("wf-hello"), "not json");
      const reply = await orchestrator.request(agentCancelSubject("wf-hello"), "not json", {
        timeout: 5_000,
      });
      return typedError(reply) === ErrorCode.INVALID_MESSAGE && allAlive();
    });
    await aNormalRunCompletes("a `not json` cancel");
  });

  it("bad messages - a workflow task with an empty, dot-only or NUL taskId is refused and the orchestrator lives", async () => {
    for (const taskId of ["", "..", "\u0000"]) {
      await attack(
        AttackClass.BAD_MESSAGES,
        `a wf-hello task with taskId ${JSON.stringify(taskId)}`,
        async () => {
          const error = await rejection(
            request(orchestrator, agentTasksSubject("wf-hello"), AgentTaskContract, task(taskId), {
              timeoutMs: 10_000,
              headers: { [Headers.AUTHORIZATION]: `Bearer ${viewer}` },
            }),
          );
          return error?.code === ErrorCode.INVALID_MESSAGE && allAlive();
        },
      );
    }
    await aNormalRunCompletes("bad task ids");
  });

  it("bad messages - `not json` on the worker's cancel subject leaves the worker serving", async () => {
    await attack(AttackClass.BAD_MESSAGES, "`not json` on loom.v1.agents.mcp-worker.cancel", async () => {
      orchestrator.publish(agentCancelSubject(MCP_WORKER_AGENT), "not json");
      const reply = await orchestrator.request(agentCancelSubject(MCP_WORKER_AGENT), "{", { timeout: 5_000 });
      return typedError(reply) === ErrorCode.INVALID_MESSAGE && allAlive();
    });
    await aNormalRunCompletes("a `not json` worker cancel");
  });

  it("bad messages - a submission that is not JSON ends as a failed run saying so, and the next one runs", async () => {
    await attack(AttackClass.BAD_MESSAGES, "`not json` on loom.v1.runs.submit", async () => {
      const runId = `junk-${randomUUID()}`;
      const watching = watchRun(runId, followRun(jetstream(loom.observer), runId), () => {});
      await jetstream(submitter).publish(Subjects.RUNS_SUBMIT, "not json", { msgID: runId });
      const result = await watching;
      const last = result.events.findLast((event) => "statusUpdate" in event);
      const code =
        last !== undefined && "statusUpdate" in last ? last.statusUpdate.metadata?.error?.code : undefined;
      return result.state === TaskState.FAILED && code === ErrorCode.INVALID_MESSAGE;
    });
    await aNormalRunCompletes("a `not json` submission");
  });

  it("bad messages - a garbage traceparent on a submission does not stop its run", async () => {
    await attack(AttackClass.BAD_MESSAGES, "a garbage traceparent on a submission", async () => {
      const runId = `trace-${randomUUID()}`;
      const watching = watchRun(runId, followRun(jetstream(loom.observer), runId), () => {});
      const headers = natsHeaders();
      headers.set("traceparent", "00-zzzz-\u00ff-01");
      headers.set(Headers.AUTHORIZATION, `Bearer ${viewer}`);
      const body = JSON.stringify({ runId, workflow: "hello", input: { contactId: "c-1" } });
      await jetstream(submitter).publish(Subjects.RUNS_SUBMIT, body, { msgID: runId, headers });
      return (await watching).state === TaskState.COMPLETED && allAlive();
    });
  });

  it("every message above reached its subject: NATS refused none of them for want of a permission", async () => {
    expect((await Promise.all(violations.map((reported) => reported()))).flat()).toEqual([]);
  });
});

/** The code of a typed error reply; undefined for anything else. */
function typedError(reply: Msg): string | undefined {
  const parsed = WireErrorSchema.safeParse(reply.json());
  return reply.headers?.get(Headers.ERROR) && parsed.success ? parsed.data.code : undefined;
}

/** A reply that is a typed error or a parseable answer, not an empty or broken one. */
function answered(reply: Msg): boolean {
  if (typedError(reply) !== undefined) return true;
  return AgentTaskContract.response.safeParse(reply.json()).success;
}
