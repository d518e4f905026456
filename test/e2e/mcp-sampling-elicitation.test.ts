import { readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { jetstream } from "@nats-io/jetstream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { shortStateName, TaskState, TERMINAL_STATES } from "../../schemas/a2a.ts";
import type { AuditRecord } from "../../schemas/audit.ts";
import { AgentTaskContract } from "../../schemas/contracts.ts";
import type { RunEvent } from "../../schemas/run.ts";
import { agentTasksSubject, LLM_AGENT } from "../../schemas/subjects.ts";
import { request } from "../../services/kit/index.ts";
import { followRun, watchRun } from "../../services/kit/run-watch.ts";
import { writeEverythingConfig } from "../helpers/everything-config.ts";
import { type Loom, NatsUser, startLoom, tokenFor } from "../helpers/loom.ts";

/** Testers may let server-everything sample; guests may call its tools but not sample. */
const POLICY = `
version: "test"
rules:
  - { name: people-start, effect: allow, roles: [tester, guest], actions: [workflow.start], workflows: ["*"] }
  - { name: starters-follow-their-runs, effect: allow, roles: ["*"], actions: [runs.read, runs.subscribe], workflows: ["*"], when: "principal.id == resource.started_by || 'admin' in principal.roles" }
  - { name: people-use-everything, effect: allow, roles: [tester, guest], actions: [tools.call], tools: ["everything.*"] }
  - { name: testers-sample-through-everything, effect: allow, roles: [tester], actions: [llm.sample], tools: [everything] }
  - { name: testers-answer, effect: allow, roles: [tester], actions: [runs.approve], workflows: ["*"] }
`;

const SAMPLE = `
id: sample-demo
steps:
  - id: ask
    call: everything.trigger-sampling-request
    with: { prompt: "{% $input.prompt %}", maxTokens: 50 }
`;

/** The step's own timeout is shorter than the test takes to answer: a person's time must not count. */
const ELICIT = `
id: elicit-demo
steps:
  - id: form
    call: everything.trigger-elicitation-request
    timeout: 3s
`;

function statusText(event: RunEvent): string {
  if (!("statusUpdate" in event)) return "";
  const part = event.statusUpdate.status.message?.parts[0];
  return part !== undefined && "text" in part ? part.text : "";
}

describe("e2e - MCP sampling and elicitation from server-everything", () => {
  let loom: Loom;
  let dir: string;
  beforeAll(async () => {
    const config = await writeEverythingConfig("loom-sampling-", {
      policy: POLICY,
      timeout: "3s",
      files: { "sample.yaml": SAMPLE, "elicit.yaml": ELICIT },
    });
    dir = config.dir;
    loom = await startLoom({
      env: config.env,
      tools: ["everything.trigger-sampling-request", "everything.trigger-elicitation-request"],
    });
  });
  afterAll(async () => {
    await loom?.[Symbol.asyncDispose]();
    await rm(dir, { recursive: true, force: true });
  });

  it("sampling - a step's server samples the local model, and the audit holds the decision and the answer", async () => {
    const { code, stdout, stderr } = await loom.cli(
      ["submit", join(dir, "sample.yaml"), "--input", '{"prompt":"what is loom?"}', "--watch", "--json"],
      { token: tokenFor("tess", "tester") },
    );
    expect(stderr).toBe("");
    const summary = JSON.parse(stdout);
    expect(summary.state).toBe("completed");
    expect(code).toBe(0);
    expect(summary.output).toContain('"model": "loom-local-echo"');
    expect(summary.output).toContain(
      "loom-local-echo: Resource trigger-sampling-request context: what is loom?",
    );

    const audit = await loom.cli(["audit", "tail", "--run", summary.runId, "--json", "-n", "50"]);
    const records = audit.stdout
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line) as AuditRecord);
    expect(records).toContainEqual(
      expect.objectContaining({
        kind: "policy.decision",
        action: "llm.sample",
        resource: "everything",
        effect: "allow",
        rule: "testers-sample-through-everything",
        principal: "tess",
        stepId: "ask",
      }),
    );
    expect(records).toContainEqual(
      expect.objectContaining({
        kind: "llm.answer",
        action: "llm.sample",
        resource: "everything",
        outcome: "ok",
        principal: "tess",
      }),
    );
    // The decision and the answer are hops of the run's own trace.
    const sampled = records.filter((record) => record.action === "llm.sample");
    expect(summary.traceId).toMatch(/^[0-9a-f]{32}$/);
    expect(sampled.length).toBeGreaterThanOrEqual(2);
    expect(sampled.map((record) => record.traceId)).toEqual(sampled.map(() => summary.traceId));
  });

  it("sampling - a task straight to the llm agent without a grant is refused, and the refusal audited", async () => {
    const sampling = {
      server: "everything",
      params: {
        maxTokens: 10,
        messages: [{ role: "user", content: { type: "text", text: "free tokens?" } }],
      },
    };
    await expect(
      request(
        // The worker's user may send the llm agent tasks: the grant is what it lacks.
        await loom.connectAs(NatsUser.MCP_WORKER),
        agentTasksSubject(LLM_AGENT),
        AgentTaskContract,
        { messageId: "m-forged", role: "ROLE_USER", parts: [{ data: sampling }], metadata: {} },
        { timeoutMs: 5_000 },
      ),
    ).rejects.toMatchObject({ code: "GRANT_REFUSED", message: "the task carries no grant from acp-policy" });
    const audit = await loom.cli(["audit", "tail", "--json", "-n", "200"]);
    const refusals = audit.stdout
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line) as AuditRecord)
      .filter((record) => record.kind === "grant.refused" && record.action === "llm.sample");
    expect(refusals).toContainEqual(
      expect.objectContaining({ resource: "everything", principal: "unknown" }),
    );
  });

  it("sampling - a role without llm.sample gets the tool's error naming the rule that denied it", async () => {
    const { code, stdout } = await loom.cli(
      ["submit", join(dir, "sample.yaml"), "--input", '{"prompt":"hi"}', "--watch", "--json"],
      { token: tokenFor("gus", "guest") },
    );
    expect(code).toBe(1);
    const summary = JSON.parse(stdout);
    expect(summary.state).toBe("failed");
    expect(summary.error.code).toBe("TOOL_ERROR");
    expect(summary.error.message).toContain("policy denied sampling through everything (rule default-deny)");
  });

  /** Submits the elicitation workflow and follows it until it waits for input (or ends). */
  async function submitUntilAsked(token: string): Promise<{ runId: string; asked: RunEvent }> {
    const submitted = await loom.cli(["submit", join(dir, "elicit.yaml"), "--json"], { token });
    const { runId } = JSON.parse(submitted.stdout) as { runId: string };
    let asked: RunEvent | undefined;
    for await (const event of followRun(jetstream(loom.observer), runId, {
      stopAt: (state) => state === TaskState.INPUT_REQUIRED || TERMINAL_STATES.has(state),
    })) {
      asked = event;
    }
    if (asked === undefined) throw new Error(`run ${runId} told nothing`);
    return { runId, asked };
  }

  /** Follows the run to its end: its state, output and every status it went through. */
  async function finalOf(runId: string): Promise<{ state: string; output: unknown; statuses: string[] }> {
    const result = await watchRun(
      runId,
      followRun(jetstream(loom.observer), runId, {
        onInvalid: (problem) => {
          throw new Error(problem);
        },
      }),
      () => {},
    );
    const statuses = result.events.flatMap((event) =>
      "statusUpdate" in event
        ? [`${shortStateName(event.statusUpdate.status.state)}: ${statusText(event)}`]
        : [],
    );
    return { state: shortStateName(result.state), output: result.output, statuses };
  }

  it("elicitation - the run waits in input-required with the server's schema; --data answers it, past the step's timeout", async () => {
    const token = tokenFor("tess", "tester");
    const { runId, asked } = await submitUntilAsked(token);
    expect("statusUpdate" in asked && asked.statusUpdate.status.state).toBe(TaskState.INPUT_REQUIRED);
    const metadata = "statusUpdate" in asked ? asked.statusUpdate.metadata : undefined;
    expect(metadata?.stepId).toBe("form");
    expect(metadata?.elicitation?.server).toBe("everything");
    expect(metadata?.elicitation?.message).toBe("Please provide inputs for the following fields:");
    expect(metadata?.elicitation?.requestedSchema.required).toEqual(["name"]);
    expect(Object.keys(metadata?.elicitation?.requestedSchema.properties ?? {})).toContain("email");
    expect(JSON.parse((await loom.cli(["runs", "get", runId, "--json"], { token })).stdout).state).toBe(
      "input-required",
    );

    // Longer than the step's 3 s timeout (and the 2 s reply margin): the clock is stopped meanwhile.
    await sleep(6_000);
    const wrong = await loom.cli(["runs", "input", runId, "--data", '{"email":"not an address"}'], { token });
    expect(wrong.code).not.toBe(0);
    expect(wrong.stderr).toContain("INVALID_INPUT");
    expect(wrong.stderr).toContain("the answer to everything's question does not match its schema");

    const answered = await loom.cli(
      ["runs", "input", runId, "--data", '{"name":"Ada Lovelace","check":true,"email":"ada@example.com"}'],
      { token },
    );
    expect(answered.stderr).toBe("");
    expect(answered.stdout.trim()).toBe(`run ${runId} is working`);
    const run = await finalOf(runId);
    expect(run.state).toBe("completed");
    expect(run.output).toContain("User provided the requested information!");
    expect(run.output).toContain("- Name: Ada Lovelace");
    expect(run.output).toContain("- Email: ada@example.com");
    expect(run.output).toContain('"action": "accept"');
    expect(run.statuses).toContain(
      "input-required: step form: everything asks: Please provide inputs for the following fields:",
    );
    expect(run.statuses).toContain("working: step form: accept by tess");
  });

  it("elicitation - --reject declines, and the server hears decline", async () => {
    const token = tokenFor("tess", "tester");
    const { runId } = await submitUntilAsked(token);
    const rejected = await loom.cli(["runs", "input", runId, "--reject"], { token });
    expect(rejected.code).toBe(0);
    const run = await finalOf(runId);
    expect(run.state).toBe("completed");
    expect(run.output).toContain("User declined to provide the requested information.");
  });

  it("elicitation - with two orchestrators, an answer taken by the replica not driving the run still gets there", async () => {
    // Input is served by any replica (a queue group), the run by the one that took it: over four
    // runs the answer lands on the other replica, and is handed over, with probability 15/16.
    loom.stack.add("orchestrator");
    const log = join(loom.logDir, "orchestrator.log");
    for (
      let tries = 0;
      (await readFile(log, "utf8")).split("taking run submissions").length < 3;
      tries += 1
    ) {
      if (tries > 100) throw new Error("the second orchestrator did not start");
      await sleep(200);
    }
    const token = tokenFor("tess", "tester");
    for (const name of ["Ada", "Grace", "Hedy", "Radia"]) {
      const { runId } = await submitUntilAsked(token);
      const answered = await loom.cli(["runs", "input", runId, "--data", JSON.stringify({ name })], {
        token,
      });
      expect(answered.stderr).toBe("");
      const run = await finalOf(runId);
      expect(run.state).toBe("completed");
      expect(run.output).toContain(`- Name: ${name}`);
    }
  });
});
