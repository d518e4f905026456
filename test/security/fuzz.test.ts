import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { type Msg, type MsgHdrs, type NatsConnection, headers as natsHeaders } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Role, TaskState } from "../../schemas/a2a.ts";
import { ErrorCode, WireErrorSchema } from "../../schemas/errors.ts";
import {
  agentCancelSubject,
  agentTasksSubject,
  feedbackSubject,
  Headers,
  LLM_AGENT,
  MCP_WORKER_AGENT,
  mcpClientResponseSubject,
  mcpSessionCancelSubject,
  mcpTaskServerRequestsSubject,
  runCancelSubject,
  runDelegatedCancelSubject,
  runElicitAnswerSubject,
  runElicitSubject,
  runEventsSubject,
  runFeedbackSubject,
  runInputSubject,
  Subjects,
  spansSubject,
  taskNotificationsSubject,
} from "../../schemas/subjects.ts";
import { UNHANDLED_REJECTION } from "../../services/kit/index.ts";
import { workflowAgentName } from "../../services/orchestrator/workflow-agents.ts";
import { WorkflowCatalog } from "../../services/orchestrator/workflow-catalog.ts";
import { type Loom, NatsUser, REPO_ROOT, startLoom, tokenFor } from "../helpers/loom.ts";
import { permissionViolations } from "../helpers/nats-users.ts";
import { type RunActors, submitAndWatch } from "../helpers/runs.ts";

/** How many messages the fuzzer sends, in all; half as requests, half as plain publishes. */
const MESSAGES = 10_000;
/** Requests in flight at once, and how long one waits for an answer. */
const CONCURRENCY = 64;
const REQUEST_TIMEOUT_MS = 3_000;
const analyst = tokenFor("ann", "analyst");

/**
 * How a subject is served: `serve` always answers (queue group or every replica); `listen` is a
 * broadcast that answers only a malformed message whose sender waits; `stream` is captured by
 * JetStream and consumed; `transient` is listened to only while a call is in flight.
 */
type Kind = "serve" | "listen" | "stream" | "transient";

interface Target {
  subject: string;
  kind: Kind;
  /**
   * The NATS user that publishes on the subject in a running Loom (for agents' subjects the
   * orchestrator, the strongest insider allowed there), so that every fuzzed message passes NATS
   * and reaches the handler.
   */
  as: NatsUser;
  /** A well-formed body, the starting point of mutations. */
  template: Record<string, unknown>;
}

const task = (overrides: Record<string, unknown> = {}) => ({
  messageId: "m-1",
  taskId: "t-1",
  contextId: "ctx-1",
  role: Role.USER,
  parts: [{ data: { server: "crm", tool: "get_contact", arguments: { id: "c-1" } } }],
  metadata: { runId: "fuzz-run", stepId: "s1" },
  ...overrides,
});

/** Every subject a service listens on, from the builders in schemas/subjects.ts. */
function targets(runId: string, workflowIds: string[]): Target[] {
  const agents = [MCP_WORKER_AGENT, LLM_AGENT, ...workflowIds.map(workflowAgentName)];
  const decision = {
    action: "tools.call",
    resource: { tool: "crm.get_contact" },
    arguments: { id: "c-1" },
    runId,
    stepId: "s1",
  };
  return [
    { subject: Subjects.POLICY_DECIDE, as: NatsUser.ORCHESTRATOR, kind: "serve", template: decision },
    { subject: Subjects.POLICY_EXPLAIN, as: NatsUser.SUBMITTER, kind: "serve", template: decision },
    ...[Subjects.POLICY_TASKS, Subjects.POLICY_TASKS_RUN].map(
      (subject): Target => ({
        subject,
        as: NatsUser.ORCHESTRATOR,
        kind: "serve",
        template: { decision, task: task() },
      }),
    ),
    { subject: Subjects.POLICY_AUTHENTICATE, as: NatsUser.ORCHESTRATOR, kind: "serve", template: {} },
    { subject: Subjects.POLICY_MASKS, as: NatsUser.ORCHESTRATOR, kind: "serve", template: {} },
    {
      subject: Subjects.POLICY_PERMITTED,
      as: NatsUser.ORCHESTRATOR,
      kind: "serve",
      template: { operations: [{ action: "tools.call", target: "crm.get_contact" }] },
    },
    {
      subject: Subjects.WORKFLOWS_APPLY,
      as: NatsUser.POLICY_ADMIN,
      kind: "serve",
      template: { definition: { id: "fuzzed", steps: [{ id: "a", call: "time.get_time" }] } },
    },
    {
      subject: Subjects.WORKFLOWS_GRAPH,
      as: NatsUser.SUBMITTER,
      kind: "serve",
      template: { workflow: "hello" },
    },
    { subject: Subjects.TOOLS_STATS, as: NatsUser.SUBMITTER, kind: "serve", template: {} },
    { subject: Subjects.TOOLS_LIST, as: NatsUser.SUBMITTER, kind: "serve", template: {} },
    { subject: Subjects.SERVERS_LIST, as: NatsUser.SUBMITTER, kind: "serve", template: {} },
    {
      subject: runInputSubject(runId),
      as: NatsUser.SUBMITTER,
      kind: "serve",
      template: { approved: true, stepId: "approve" },
    },
    {
      subject: runInputSubject("no-such-run"),
      as: NatsUser.SUBMITTER,
      kind: "serve",
      template: { approved: true },
    },
    { subject: runCancelSubject(runId), as: NatsUser.SUBMITTER, kind: "serve", template: { reason: "fuzz" } },
    {
      subject: runCancelSubject("no-such-run"),
      as: NatsUser.SUBMITTER,
      kind: "serve",
      template: { reason: "fuzz" },
    },
    {
      subject: runDelegatedCancelSubject("no-such-run"),
      as: NatsUser.ORCHESTRATOR,
      kind: "serve",
      template: { reason: "fuzz" },
    },
    {
      subject: runFeedbackSubject(runId),
      as: NatsUser.SUBMITTER,
      kind: "serve",
      template: { stepId: "contact", verdict: "bad", comment: "fuzz" },
    },
    {
      subject: runElicitSubject(runId),
      as: NatsUser.MCP_WORKER,
      kind: "serve",
      template: {
        taskId: `${runId}:contact:1`,
        stepId: "contact",
        server: "crm",
        message: "name?",
        requestedSchema: { type: "object", properties: { name: { type: "string" } } },
      },
    },
    {
      subject: runElicitAnswerSubject(runId),
      as: NatsUser.ORCHESTRATOR,
      kind: "listen",
      template: { stepId: "contact", answer: { action: "accept", content: { name: "x" } } },
    },
    ...agents.map(
      (agent): Target => ({
        subject: agentTasksSubject(agent),
        // Tool tasks reach the worker only as acp-policy forwards them.
        as: agent === MCP_WORKER_AGENT ? NatsUser.ACP_POLICY : NatsUser.ORCHESTRATOR,
        kind: "serve",
        template: task(),
      }),
    ),
    ...agents.map(
      (agent): Target => ({
        subject: agentCancelSubject(agent),
        as: NatsUser.ORCHESTRATOR,
        kind: "listen",
        template: { taskId: "t-1" },
      }),
    ),
    {
      subject: Subjects.RUNS_SUBMIT,
      as: NatsUser.SUBMITTER,
      kind: "stream",
      template: { runId: "fuzz-submitted", workflow: "hello", input: { contactId: "c-1" } },
    },
    {
      subject: runEventsSubject(runId),
      as: NatsUser.ORCHESTRATOR,
      kind: "stream",
      template: { statusUpdate: { taskId: runId, contextId: runId, status: { state: TaskState.WORKING } } },
    },
    {
      // LOOM_TOOL_CALLS, which `loom tools stats` and `loom feedback` read: its one writer now (the
      // worker's calls are its execution records, and its user may not publish call records).
      subject: feedbackSubject(runId),
      as: NatsUser.ORCHESTRATOR,
      kind: "stream",
      template: { stepId: "contact", verdict: "bad" },
    },
    {
      // Only the services' users may publish spans (a submitter is refused: trusted-bus.test.ts).
      subject: spansSubject("0af7651916cd43dd8448eb211c80319c"),
      as: NatsUser.ORCHESTRATOR,
      kind: "stream",
      template: { name: "span" },
    },
    {
      subject: taskNotificationsSubject("t-1"),
      as: NatsUser.MCP_WORKER,
      kind: "transient",
      template: { kind: "progress", progress: 1, total: 2 },
    },
    {
      subject: mcpTaskServerRequestsSubject("t-1"),
      as: NatsUser.MCP_WORKER,
      kind: "transient",
      template: { method: "sampling/createMessage", params: {} },
    },
    {
      subject: mcpSessionCancelSubject("s-1"),
      as: NatsUser.ORCHESTRATOR,
      kind: "transient",
      template: { requestId: 1 },
    },
    {
      subject: mcpClientResponseSubject("s-1", "r-1"),
      as: NatsUser.ORCHESTRATOR,
      kind: "transient",
      template: { jsonrpc: "2.0", id: "r-1", result: {} },
    },
  ];
}

/** A small seeded generator, so a failing run can be replayed. */
function random(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

const HOSTILE_VALUES: unknown[] = [
  "",
  "..",
  "../../etc/passwd",
  "\u0000",
  "a\u0000b",
  "x".repeat(100_000),
  "loom.v1.>",
  "*",
  " ",
  "{% $count([1..1500000].($*2)) %}",
  "Bearer x",
  12345,
  -1,
  1e308,
  0.5,
  null,
  true,
  [],
  {},
  [[[[[]]]]],
  JSON.parse('{"__proto__": {"polluted": true}}'),
  { constructor: { prototype: { polluted: true } } },
];

const JUNK: string[] = [
  "not json",
  "",
  "{",
  "}",
  "null",
  "[]",
  "0",
  "-1e999",
  '""',
  "true",
  "\u0000",
  "{}{}",
];

function deep(depth: number, asArray: boolean): string {
  return asArray
    ? `${"[".repeat(depth)}${"]".repeat(depth)}`
    : `${'{"a":'.repeat(depth)}1${"}".repeat(depth)}`;
}

interface Fuzzed {
  data: Uint8Array | string;
  headers?: MsgHdrs;
  /** Whether the body cannot be parsed as JSON at all (a served subject must answer INVALID_MESSAGE). */
  notJson: boolean;
}

function mutate(template: Record<string, unknown>, next: () => number): unknown {
  const pick = <T>(items: readonly T[]): T => items[Math.floor(next() * items.length)] as T;
  const keys = Object.keys(template);
  const copy: Record<string, unknown> = structuredClone(template);
  switch (Math.floor(next() * 5)) {
    case 0: // one field replaced with a hostile value
      if (keys.length > 0) copy[pick(keys)] = pick(HOSTILE_VALUES);
      else copy.taskId = pick(HOSTILE_VALUES);
      return copy;
    case 1: // one field missing
      if (keys.length > 0) delete copy[pick(keys)];
      return copy;
    case 2: // unknown fields
      return { ...copy, unexpected: pick(HOSTILE_VALUES), [pick(["__proto__", "constructor", "$ref"])]: 1 };
    case 3: // the wrong type at the top
      return pick([[copy], "text", 7, null]);
    default: // every field hostile
      return Object.fromEntries(keys.map((key) => [key, pick(HOSTILE_VALUES)]));
  }
}

function fuzzHeaders(next: () => number): MsgHdrs | undefined {
  const choice = Math.floor(next() * 8);
  if (choice > 4) return undefined;
  const result = natsHeaders();
  if (choice === 0) result.set("traceparent", "00-zzzz-not-a-trace-01");
  if (choice === 1) result.set("traceparent", `00-${"0".repeat(32)}-${"0".repeat(16)}-ff`);
  if (choice === 2) result.set(Headers.AUTHORIZATION, "Bearer x");
  if (choice === 3) result.set(Headers.AUTHORIZATION, `Bearer ${"a".repeat(8_000)}`);
  if (choice === 4) result.set(Headers.MSG_ID, "../..");
  return result;
}

function fuzz(target: Target, next: () => number, maxPayload: number): Fuzzed {
  const roll = next();
  const headers = fuzzHeaders(next);
  const withHeaders = (fuzzed: Fuzzed): Fuzzed => (headers === undefined ? fuzzed : { ...fuzzed, headers });
  if (roll < 0.25) {
    const junk = JUNK[Math.floor(next() * JUNK.length)] ?? "";
    return withHeaders({ data: junk, notJson: !isJson(junk) });
  }
  if (roll < 0.28) {
    const bytes = new Uint8Array(1 + Math.floor(next() * 512)).map(() => Math.floor(next() * 256));
    return withHeaders({ data: bytes, notJson: !isJson(new TextDecoder().decode(bytes)) });
  }
  if (roll < 0.32)
    return withHeaders({ data: deep(1_000 + Math.floor(next() * 9_000), next() < 0.5), notJson: false });
  if (roll < 0.33) {
    // Near the broker's limit: the body alone, headers kept small.
    const pad = "p".repeat(maxPayload - 4_096);
    return { data: JSON.stringify({ ...target.template, pad }), notJson: false };
  }
  return withHeaders({ data: JSON.stringify(mutate(target.template, next)) ?? "null", notJson: false });
}

function isJson(text: string): boolean {
  try {
    JSON.parse(text);
    return true;
  } catch {
    return false;
  }
}

function isTypedError(reply: Msg): boolean {
  if (!reply.headers?.has(Headers.ERROR)) return false;
  try {
    return WireErrorSchema.safeParse(reply.json()).success;
  } catch {
    return false;
  }
}

describe("security - fuzzing every subject a service listens on", () => {
  let loom: Loom;
  let runId: string;
  let workflowIds: string[];
  let runs: RunActors;

  beforeAll(async () => {
    loom = await startLoom();
    runs = { submitter: await loom.connectAs(NatsUser.SUBMITTER), observer: loom.observer };
    const normal = await submitAndWatch(runs, {
      workflow: "hello",
      input: { contactId: "c-1" },
      token: analyst,
    });
    expect(normal.state).toBe(TaskState.COMPLETED);
    runId = normal.runId;
    workflowIds = (await WorkflowCatalog.readDirectory(join(REPO_ROOT, "workflows"))).workflows.map(
      (workflow) => workflow.id,
    );
  });
  afterAll(async () => {
    await loom?.[Symbol.asyncDispose]();
  });

  it("fuzz - 10,000 malformed messages crash no service, every unparseable request gets a typed error, and a run completes after", {
    timeout: 180_000,
  }, async () => {
    const pids = loom.stack.services.map((service) => ({ name: service.name, pid: service.process.pid }));
    const all = targets(runId, workflowIds);
    const senders = new Map<NatsUser, NatsConnection>();
    for (const { as } of all) {
      if (!senders.has(as)) senders.set(as, await loom.connectAs(as));
    }
    const sender = (target: Target) => senders.get(target.as) as NatsConnection;
    const violations = [...senders.values()].map(permissionViolations);
    const maxPayload = loom.observer.info?.max_payload ?? 1_048_576;
    const next = random(11);
    const counts = { sent: 0, typedErrors: 0, replies: 0, silent: 0 };
    const untyped: string[] = [];
    /** Served subjects that answered at least once: proof the fuzz reached their handlers. */
    const answered = new Set<string>();
    const inFlight = new Set<Promise<void>>();

    for (let index = 0; index < MESSAGES; index++) {
      const target = all[index % all.length] as Target;
      const message = fuzz(target, next, maxPayload);
      // Every other round over the targets asks and waits: each target gets both, whether the
      // number of targets is odd or even.
      const asRequest =
        Math.floor(index / all.length) % 2 === 0 && (target.kind === "serve" || target.kind === "listen");
      counts.sent++;
      if (!asRequest) {
        const nc = sender(target);
        nc.publish(target.subject, message.data, message.headers ? { headers: message.headers } : {});
        if (index % 200 === 0) await nc.flush();
        continue;
      }
      const sending = sender(target)
        .request(target.subject, message.data, {
          timeout: REQUEST_TIMEOUT_MS,
          ...(message.headers ? { headers: message.headers } : {}),
        })
        .then(
          (reply) => {
            counts.replies++;
            answered.add(target.subject);
            if (isTypedError(reply)) counts.typedErrors++;
            else if (message.notJson) untyped.push(`${target.subject}: an untyped reply to a non-JSON body`);
          },
          () => {
            counts.silent++;
            // A served subject answers a body it cannot read, whatever else it does.
            if (message.notJson && target.kind === "serve") {
              untyped.push(`${target.subject}: no answer to a non-JSON body`);
            }
          },
        )
        .finally(() => inFlight.delete(sending));
      inFlight.add(sending);
      if (inFlight.size >= CONCURRENCY) await Promise.race(inFlight);
    }
    await Promise.all(inFlight);
    const refused = (await Promise.all(violations.map((reported) => reported()))).flat();

    const crashed = pids.filter(({ name, pid }) => {
      const now = loom.stack.services.find((service) => service.name === name);
      return (
        now === undefined ||
        now.process.pid !== pid ||
        now.process.exitCode !== null ||
        now.process.signalCode !== null
      );
    });
    const unhandled = await Promise.all(
      pids.map(async ({ name }) => {
        const text = await readFile(join(loom.logDir, `${name}.log`), "utf8").catch(() => "");
        return text.split("\n").filter((line) => line.includes(`"msg":"${UNHANDLED_REJECTION}"`)).length;
      }),
    );
    console.log(`fuzz: ${counts.sent} sent, ${counts.typedErrors} typed errors, ${crashed.length} crashes`);
    console.log(
      `fuzz: ${counts.replies} replies, ${counts.silent} requests unanswered in ${REQUEST_TIMEOUT_MS} ms, ${all.length} subjects, ${refused.length} refused by NATS permissions`,
    );

    expect(counts.sent).toBeGreaterThanOrEqual(10_000);
    expect(crashed.map(({ name }) => name)).toEqual([]);
    expect(unhandled.reduce((sum, count) => sum + count, 0)).toBe(0);
    expect(untyped).toEqual([]);
    expect(counts.typedErrors).toBeGreaterThan(counts.sent / 5);
    // A message NATS refused never reached a handler: none may have been.
    expect(refused).toEqual([]);
    const served = all.filter((target) => target.kind === "serve").map((target) => target.subject);
    expect(served.filter((subject) => !answered.has(subject))).toEqual([]);

    const after = await submitAndWatch(runs, {
      workflow: "hello",
      input: { contactId: "c-1" },
      token: analyst,
      timeoutMs: 30_000,
    });
    expect(after.state).toBe(TaskState.COMPLETED);
    expect(after.error?.code).not.toBe(ErrorCode.INTERNAL);
  });
});
