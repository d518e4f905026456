import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { jetstream } from "@nats-io/jetstream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { shortStateName, TaskState } from "../../schemas/a2a.ts";
import { RunEventSchema } from "../../schemas/run.ts";
import { Subjects } from "../../schemas/subjects.ts";
import { waitUntilReady } from "../../services/cli/stack.ts";
import { followRun, watchRun } from "../../services/kit/run-watch.ts";
import { type CliResult, type Loom, NatsUser, REPO_ROOT, startLoom, tokenFor } from "../helpers/loom.ts";

const EVERYTHING = join(REPO_ROOT, "node_modules/@modelcontextprotocol/server-everything/dist/index.js");
const LONG_TOOL = "everything.trigger-long-running-operation";
/** How long the slow step would take if nobody canceled it. */
const LONG_SECONDS = 20;

const analyst = tokenFor("alice", "analyst");
const manager = tokenFor("mia", "manager", "analyst");
const tester = tokenFor("tess", "tester");

/**
 * The demo servers plus server-everything, whose stdin goes through `tee` into a file: what the
 * file holds is exactly what that MCP server received, cancellations included.
 */
const servers = (everythingInbox: string) => `
servers:
  - name: time
    transport: { type: stdio, command: node, args: ["${REPO_ROOT}/services/mcp-servers/time.ts"] }
    timeout: 5s
    governance: { owner: platform-team, data_classification: public, access_level: read }
  - name: crm
    transport: { type: stdio, command: node, args: ["${REPO_ROOT}/services/mcp-servers/crm.ts"] }
    timeout: 10s
    governance: { owner: sales-ops, data_classification: restricted, access_level: write, region: eu }
  - name: everything
    transport:
      type: stdio
      command: sh
      args: ["-c", "tee -a '${everythingInbox}' | exec node '${EVERYTHING}' stdio"]
    timeout: 60s
    governance: { owner: mcp-reference, data_classification: public, access_level: read }
`;

const TESTER_POLICY = `
version: "tester"
rules:
  - { name: testers-start, effect: allow, roles: [tester], actions: [workflow.start], workflows: ["*"] }
  - { name: starters-follow-their-runs, effect: allow, roles: ["*"], actions: [runs.read, runs.subscribe], workflows: ["*"], when: "principal.id == resource.started_by || 'admin' in principal.roles" }
  - { name: testers-use-everything, effect: allow, roles: [tester], actions: [tools.call], tools: ["everything.*"] }
`;

const WORKFLOWS: Record<string, string> = {
  "slow.yaml": `
id: slow
steps:
  - id: slow
    call: ${LONG_TOOL}
    with: { duration: ${LONG_SECONDS}, steps: 4 }
    timeout: 40s
`,
  "too-slow.yaml": `
id: too-slow
steps:
  - id: slow
    call: ${LONG_TOOL}
    with: { duration: ${LONG_SECONDS}, steps: 4 }
    timeout: 1s
    retry: { max: 2, backoff: 100ms }
`,
  // Valid JSONata that fails at run time: `+` on a string.
  "bad-condition.yaml": `
id: bad-condition
steps:
  - id: route
    choice:
      - { when: "{% $input.amount + 1 > 2 %}", goto: big }
  - id: small
    call: time.get_time
    with: { timezone: UTC }
  - id: big
    call: time.get_time
    with: { timezone: UTC }
`,
  "short-deadline.yaml": `
id: short-deadline
deadline: 2s
steps:
  - id: ok
    approval: { prompt: "Nobody will answer this", roles: [manager] }
`,
  "compensate-fail.yaml": `
id: compensate-fail
steps:
  - id: first
    call: time.get_time
    with: { timezone: UTC }
  - id: lookup
    call: crm.get_contact
    with: { id: nobody }
    retry: { max: 3, backoff: 50ms }
    onError:
      steps:
        - { id: undo, call: time.get_time, with: { timezone: UTC } }
      then: fail
  - id: never
    call: time.get_time
    with: { timezone: UTC }
`,
  // No output expression: the run's output is the last step's result, found under its `as` name.
  // That step only finds Ada when the failure before it is visible in $steps.
  "compensate-continue.yaml": `
id: compensate-continue
steps:
  - id: lookup
    call: crm.get_contact
    with: { id: nobody }
    onError:
      steps:
        - { id: undo, call: time.get_time, with: { timezone: UTC } }
      then: continue
  - id: after
    as: person
    call: crm.get_contact
    with: { id: "{% $steps.lookup.error.code = 'TOOL_ERROR' ? 'c-1' : 'c-2' %}" }
`,
  "delegating.yaml": `
id: delegating
steps:
  - id: handoff
    delegate: { agent: wf-hello, message: { contactId: "{% $input.contactId %}" } }
output: "{% { 'fromHello': $steps.handoff.greeting, 'region': $steps.handoff.region } %}"
`,
  "delegating-approval.yaml": `
id: delegating-approval
steps:
  - id: handoff
    delegate: { agent: wf-crm-enrich, message: { contactId: "{% $input.contactId %}" } }
`,
};

/** The JSON a command printed last (`--json`). */
function lastJson(result: CliResult) {
  const line = result.stdout.trim().split("\n").at(-1) ?? "";
  try {
    return JSON.parse(line);
  } catch {
    throw new Error(`not JSON (exit ${result.code}): ${result.stdout} ${result.stderr}`);
  }
}

describe("e2e - durable workflows through the CLI", () => {
  let loom: Loom;
  let dir: string;
  let everythingInbox: string;
  const file = (name: string) => join(dir, name);

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "loom-workflows-"));
    everythingInbox = file("everything-stdin.jsonl");
    await writeFile(everythingInbox, "");
    await writeFile(file("servers.yaml"), servers(everythingInbox));
    await mkdir(file("policies"));
    await copyFile(join(REPO_ROOT, "infra/policies/default.yaml"), file("policies/default.yaml"));
    await writeFile(file("policies/tester.yaml"), TESTER_POLICY);
    for (const [name, text] of Object.entries(WORKFLOWS)) await writeFile(file(name), text);
    loom = await startLoom({
      env: {
        LOOM_MCP_SERVERS: file("servers.yaml"),
        LOOM_POLICY_DIR: file("policies"),
        LOOM_RUN_LEASE_MS: "1500",
      },
      tools: ["time.get_time", "crm.get_contact", LONG_TOOL],
    });
  });
  afterAll(async () => {
    await loom?.[Symbol.asyncDispose]();
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  /** Resolves with the id of the next run that announces `state` on its events. */
  function nextRunIn(state: TaskState, timeoutMs = 20_000): Promise<string> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        subscription.unsubscribe();
        reject(new Error(`no run reached ${shortStateName(state)} within ${timeoutMs} ms`));
      }, timeoutMs);
      const subscription = loom.observer.subscribe(Subjects.RUN_EVENTS_ALL, {
        callback: (_error, message) => {
          const event = RunEventSchema.safeParse(message.json());
          if (
            event.success &&
            "statusUpdate" in event.data &&
            event.data.statusUpdate.status.state === state
          ) {
            clearTimeout(timer);
            subscription.unsubscribe();
            resolve(event.data.statusUpdate.taskId);
          }
        },
      });
    });
  }

  async function runRecord(runId: string) {
    const get = await loom.cli(["runs", "get", runId, "--json"], { token: tokenFor("root", "admin") });
    expect(get.code, get.stderr).toBe(0);
    return JSON.parse(get.stdout);
  }

  async function waitForState(runId: string, state: string, timeoutMs = 15_000) {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const record = await runRecord(runId);
      if (record.state === state || Date.now() > deadline) return record;
      await sleep(200);
    }
  }

  /** The status messages of a run, replayed from its events as `--watch` shows them. */
  async function statusMessages(runId: string): Promise<string[]> {
    const { events } = await watchRun(runId, followRun(jetstream(loom.observer), runId), () => {});
    return events.flatMap((event) =>
      "statusUpdate" in event
        ? (event.statusUpdate.status.message?.parts.flatMap((part) => ("text" in part ? [part.text] : [])) ??
          [])
        : [],
    );
  }

  it("e2e - crm-enrich for an EU contact completes without approval and renders the summary prompt", async () => {
    const result = await loom.cli(
      ["submit", "crm-enrich", "--input", '{"contactId":"c-1"}', "--watch", "--json"],
      { token: analyst, timeoutMs: 45_000 },
    );
    const summary = lastJson(result);
    expect(summary.state).toBe("completed");
    expect(result.code).toBe(0);
    expect(summary.output).toMatchObject({ contact: "Ada Lovelace", escalated: false });
    expect(summary.output.summaryPrompt).toContain("Ada Lovelace (eu)");
    expect((await statusMessages(summary.runId)).join("\n")).not.toMatch(/Escalate/);
  });

  it("e2e - a US contact waits for a manager across an orchestrator SIGKILL, and completes escalated", async () => {
    const waiting = nextRunIn(TaskState.INPUT_REQUIRED);
    const watched = loom.cli(
      ["submit", "crm-enrich", "--input", '{"contactId":"c-2"}', "--watch", "--json"],
      {
        token: analyst,
        timeoutMs: 60_000,
      },
    );
    const runId = await waiting;
    const record = await waitForState(runId, "input-required");
    expect(record.state).toBe("input-required");
    expect(record.workflowId).toBe("crm-enrich");

    const refused = await loom.cli(["runs", "input", runId, "--approve"], { token: analyst });
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toContain("POLICY_DENIED");
    expect((await runRecord(runId)).state).toBe("input-required");

    const orchestrator = loom.stack.services.find((service) => service.name === "orchestrator");
    expect(orchestrator).toBeDefined();
    const exited = new Promise((resolve) => orchestrator?.process.once("exit", resolve));
    orchestrator?.process.kill("SIGKILL");
    await exited;
    await loom.stack.restart("orchestrator");
    await waitUntilReady(await loom.connectAs(NatsUser.ORCHESTRATOR), {
      tools: [],
      timeoutMs: 20_000,
      stack: loom.stack,
    });
    expect((await runRecord(runId)).state).toBe("input-required");

    let approved = await loom.cli(["runs", "input", runId, "--approve", "--comment", "go", "--json"], {
      token: manager,
    });
    // The restarted orchestrator may not listen yet: only "nobody answered" is worth another try.
    for (let tries = 0; approved.code !== 0 && tries < 20; tries++) {
      expect(approved.stderr).toMatch(/AGENT_UNAVAILABLE|TIMEOUT|no responders/i);
      await sleep(500);
      approved = await loom.cli(["runs", "input", runId, "--approve", "--json"], { token: manager });
    }
    expect(approved.code, approved.stderr).toBe(0);
    expect(JSON.parse(approved.stdout)).toMatchObject({ runId });

    const result = await watched;
    const summary = lastJson(result);
    expect(summary).toMatchObject({ runId, state: "completed" });
    expect(result.code).toBe(0);
    expect(summary.output).toMatchObject({ contact: "Grace Hopper", escalated: true });
    expect(summary.output.summaryPrompt).toContain("Grace Hopper (us)");
    const messages = await statusMessages(runId);
    expect(messages).toContain("Escalate Grace Hopper to the US desk?");
    expect(messages.some((text) => /step approve: approved by mia/.test(text))).toBe(true);
  });

  it("e2e - a rejected approval ends the run rejected and --watch exits 2", async () => {
    const waiting = nextRunIn(TaskState.INPUT_REQUIRED);
    const watched = loom.cli(
      ["submit", "crm-enrich", "--input", '{"contactId":"c-3"}', "--watch", "--json"],
      {
        token: analyst,
        timeoutMs: 45_000,
      },
    );
    const runId = await waiting;
    const rejected = await loom.cli(["runs", "input", runId, "--reject", "--comment", "not now"], {
      token: manager,
    });
    expect(rejected.code, rejected.stderr).toBe(0);
    expect(rejected.stdout).toContain(`run ${runId} is rejected`);
    const result = await watched;
    const summary = lastJson(result);
    expect(summary.state).toBe("rejected");
    expect(result.code).toBe(2);
    expect(summary.error.code).toBe("APPROVAL_REJECTED");
    expect(summary.error.message).toBe("approval approve rejected by mia");
    expect(summary.output).toBeUndefined();

    const again = await loom.cli(["runs", "input", runId, "--approve"], { token: manager });
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/RUN_NOT_WAITING.*already ended \(rejected\)/);
  });

  it("e2e - loom runs cancel ends a run blocked in a long tool call, and the MCP server is told", async () => {
    const started = Date.now();
    const submitted = await loom.cli(["submit", file("slow.yaml")], { token: tester });
    expect(submitted.code, submitted.stderr).toBe(0);
    const runId = submitted.stdout.trim();

    // Wait until server-everything has the call.
    const deadline = Date.now() + 15_000;
    while (!(await readFile(everythingInbox, "utf8")).includes("trigger-long-running-operation")) {
      expect(Date.now(), "the long call never reached the MCP server").toBeLessThan(deadline);
      await sleep(100);
    }
    expect((await runRecord(runId)).state).toBe("working");

    const canceled = await loom.cli(["runs", "cancel", runId, "--reason", "too slow", "--json"], {
      token: tester,
    });
    expect(canceled.code, canceled.stderr).toBe(0);
    expect(JSON.parse(canceled.stdout)).toEqual({ runId, state: "canceled" });
    const record = await runRecord(runId);
    expect(record.state).toBe("canceled");
    expect(record.error).toMatchObject({ code: "CANCELED" });
    expect(record.error.message).toContain("too slow");
    // Well before the tool would have finished by itself.
    expect(Date.now() - started).toBeLessThan(LONG_SECONDS * 750);

    // What the server received: the call, then a notifications/cancelled for that request.
    let inbox = "";
    for (let waited = 0; waited < 5_000 && !inbox.includes("notifications/cancelled"); waited += 100) {
      await sleep(100);
      inbox = await readFile(everythingInbox, "utf8");
    }
    const messages = inbox
      .split("\n")
      .filter(Boolean)
      .map((line) => JSON.parse(line));
    const call = messages.find(
      (message) =>
        message.method === "tools/call" && message.params?.name === "trigger-long-running-operation",
    );
    const cancellation = messages.find((message) => message.method === "notifications/cancelled");
    expect(call).toBeDefined();
    expect(cancellation?.params?.requestId).toBe(call.id);

    // The canceled run stays canceled: the abandoned call's late outcome does not revive it.
    expect((await runRecord(runId)).state).toBe("canceled");
  });

  it("e2e - a run waiting for approval can be canceled by whoever started it, though nobody drives it", async () => {
    const waiting = nextRunIn(TaskState.INPUT_REQUIRED);
    const submitted = await loom.cli(["submit", "crm-enrich", "--input", '{"contactId":"c-2"}'], {
      token: analyst,
    });
    expect(submitted.code, submitted.stderr).toBe(0);
    const runId = submitted.stdout.trim();
    expect(await waiting).toBe(runId);
    const byStranger = await loom.cli(["runs", "cancel", runId, "--json"], {
      token: tokenFor("sam", "analyst"),
    });
    // Someone who may not see the run hears what an unknown id gets: nothing says it exists.
    expect(byStranger.code).not.toBe(0);
    expect(byStranger.stderr).toContain(`error RUN_NOT_FOUND: no run with id ${runId}`);
    expect((await runRecord(runId)).state).toBe("input-required");
    const canceled = await loom.cli(["runs", "cancel", runId, "--json"], { token: analyst });
    expect(canceled.code, canceled.stderr).toBe(0);
    expect(JSON.parse(canceled.stdout)).toEqual({ runId, state: "canceled" });
    const record = await runRecord(runId);
    expect(record.state).toBe("canceled");
    expect(record.error?.message).toBe("run canceled by alice");
  });

  it("e2e - canceling a run cancels the child run its delegate step started, on the parent's run token", async () => {
    // crm-enrich for c-2 waits for a manager's approval: the child run waits, the parent with it.
    const childWaiting = nextRunIn(TaskState.INPUT_REQUIRED);
    const submitted = await loom.cli(
      ["submit", file("delegating-approval.yaml"), "--input", '{"contactId":"c-2"}'],
      { token: analyst },
    );
    expect(submitted.code, submitted.stderr).toBe(0);
    const parentId = submitted.stdout.trim();
    const childId = await childWaiting;
    expect(childId.startsWith(`${parentId}_handoff_`)).toBe(true);
    expect((await runRecord(childId)).workflowId).toBe("crm-enrich");

    const canceled = await loom.cli(["runs", "cancel", parentId, "--json"], { token: analyst });
    expect(canceled.code, canceled.stderr).toBe(0);
    expect(JSON.parse(canceled.stdout)).toEqual({ runId: parentId, state: "canceled" });
    const child = await waitForState(childId, "canceled");
    expect(child.state).toBe("canceled");
    expect(child.error?.message).toBe("run canceled by alice (the delegating step was canceled)");
  });

  it("e2e - a step past its timeout fails TOOL_TIMEOUT after its retries, without waiting for the tool", async () => {
    const started = Date.now();
    const result = await loom.cli(["submit", file("too-slow.yaml"), "--watch", "--json"], { token: tester });
    const summary = lastJson(result);
    expect(summary.state).toBe("failed");
    expect(result.code).toBe(1);
    expect(summary.error.code).toBe("TOOL_TIMEOUT");
    expect(Date.now() - started).toBeLessThan(LONG_SECONDS * 500);
    const messages = await statusMessages(summary.runId);
    expect(messages.filter((text) => text.startsWith("step slow:"))).toEqual([
      `step slow: calling ${LONG_TOOL}`,
      `step slow: calling ${LONG_TOOL} (attempt 2)`,
    ]);
  });

  it("e2e - a run still waiting for approval at its deadline fails DEADLINE_EXCEEDED", async () => {
    const started = Date.now();
    const result = await loom.cli(["submit", file("short-deadline.yaml"), "--watch", "--json"], {
      token: analyst,
      timeoutMs: 15_000,
    });
    const summary = lastJson(result);
    expect(summary.state).toBe("failed");
    expect(result.code).toBe(1);
    expect(summary.error.code).toBe("DEADLINE_EXCEEDED");
    expect(await statusMessages(summary.runId)).toContain("Nobody will answer this");
    expect(Date.now() - started).toBeLessThan(10_000);
  });

  // From here on each test only submits its own run and watches it to its end, with no clock to
  // beat: they run side by side.
  it.concurrent("e2e - a choice whose condition fails at run time fails the run with EXPRESSION_FAILED", async () => {
    const result = await loom.cli(
      ["submit", file("bad-condition.yaml"), "--input", '{"amount":"lots"}', "--watch", "--json"],
      { token: analyst, timeoutMs: 15_000 },
    );
    const summary = lastJson(result);
    expect(summary.state).toBe("failed");
    expect(result.code).toBe(1);
    expect(summary.error.code).toBe("EXPRESSION_FAILED");
    expect(summary.error.message).toContain("step route: when");
  });

  it.concurrent("e2e - onError runs the compensation step, then fails with the original error", async () => {
    const result = await loom.cli(["submit", file("compensate-fail.yaml"), "--watch", "--json"], {
      token: analyst,
    });
    const summary = lastJson(result);
    expect(summary.state).toBe("failed");
    expect(result.code).toBe(1);
    expect(summary.error.code).toBe("TOOL_ERROR");
    expect(summary.error.message).toContain('no contact with id "nobody"');
    const messages = await statusMessages(summary.runId);
    expect(messages).toContain("step undo: calling time.get_time");
    // TOOL_ERROR is not transient: one attempt despite retry.max 3, and the run stops there.
    expect(messages.filter((text) => text.startsWith("step lookup:"))).toEqual([
      "step lookup: calling crm.get_contact",
    ]);
    expect(messages.some((text) => text.startsWith("step never:"))).toBe(false);
  });

  it.concurrent("e2e - onError then: continue goes on with the failure visible in $steps", async () => {
    const result = await loom.cli(["submit", file("compensate-continue.yaml"), "--watch", "--json"], {
      token: analyst,
    });
    const summary = lastJson(result);
    expect(summary.state).toBe("completed");
    expect(result.code).toBe(0);
    expect(summary.error).toBeUndefined();
    expect(summary.output).toMatchObject({ id: "c-1", name: "Ada Lovelace" });
    expect(await statusMessages(summary.runId)).toContain("step undo: calling time.get_time");
  });

  it.concurrent("e2e - a delegate step hands work to another workflow exposed as agent wf-hello", async () => {
    const result = await loom.cli(
      ["submit", file("delegating.yaml"), "--input", '{"contactId":"c-4"}', "--watch", "--json"],
      { token: analyst },
    );
    const summary = lastJson(result);
    expect(summary.state, JSON.stringify(summary)).toBe("completed");
    expect(result.code).toBe(0);
    expect(summary.output.fromHello).toBe("Hello, Karen Spärck Jones");
    expect(summary.output.region).toBe("eu");
  });
});
