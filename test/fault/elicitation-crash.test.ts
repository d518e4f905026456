import { once } from "node:events";
import { rm } from "node:fs/promises";
import { join } from "node:path";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TaskState, TERMINAL_STATES } from "../../schemas/a2a.ts";
import type { RunEvent } from "../../schemas/run.ts";
import { followRun, lastEventSequence, watchRun } from "../../services/kit/run-watch.ts";
import { writeEverythingConfig } from "../helpers/everything-config.ts";
import { type Loom, startLoom, tokenFor } from "../helpers/loom.ts";

const POLICY = `
version: "test"
rules:
  - { name: testers-start, effect: allow, roles: [tester], actions: [workflow.start], workflows: ["*"] }
  - { name: starters-follow-their-runs, effect: allow, roles: ["*"], actions: [runs.read, runs.subscribe], workflows: ["*"], when: "principal.id == resource.started_by || 'admin' in principal.roles" }
  - { name: testers-use-everything, effect: allow, roles: [tester], actions: [tools.call], tools: ["everything.*"] }
  - { name: testers-answer, effect: allow, roles: [tester], actions: [runs.approve], workflows: ["*"] }
`;
const ELICIT = `
id: elicit-demo
steps:
  - id: form
    call: everything.trigger-elicitation-request
`;

/** Follows a run from `afterSequence` until it asks for input (or ends); the event that stopped it. */
async function nextQuestion(loom: Loom, runId: string, afterSequence?: number): Promise<RunEvent> {
  let last: RunEvent | undefined;
  for await (const event of followRun(jetstream(loom.observer), runId, {
    stopAt: (state) => state === TaskState.INPUT_REQUIRED || TERMINAL_STATES.has(state),
    ...(afterSequence === undefined ? {} : { afterSequence }),
  })) {
    last = event;
  }
  if (last === undefined) throw new Error(`run ${runId} told nothing`);
  return last;
}

describe("fault - an MCP server's open question when the orchestrator dies", () => {
  let loom: Loom;
  let dir: string;
  beforeAll(async () => {
    const config = await writeEverythingConfig("loom-elicit-crash-", {
      policy: POLICY,
      timeout: "3s",
      files: { "elicit.yaml": ELICIT },
    });
    dir = config.dir;
    loom = await startLoom({
      env: config.env,
      tools: ["everything.trigger-elicitation-request"],
    });
  });
  afterAll(async () => {
    await loom?.[Symbol.asyncDispose]();
    await rm(dir, { recursive: true, force: true });
  });

  it("fault - after a SIGKILL the run takes the step over, the server asks again, and the answer completes it", async () => {
    const token = tokenFor("tess", "tester");
    const submitted = await loom.cli(["submit", join(dir, "elicit.yaml"), "--json"], { token });
    const { runId } = JSON.parse(submitted.stdout) as { runId: string };
    const first = await nextQuestion(loom, runId);
    expect("statusUpdate" in first && first.statusUpdate.status.state).toBe(TaskState.INPUT_REQUIRED);
    const asked = await lastEventSequence(await jetstreamManager(loom.observer), runId);

    for (const service of loom.stack.services.filter((candidate) => candidate.name === "orchestrator")) {
      const exited = once(service.process, "exit");
      service.process.kill("SIGKILL");
      await exited;
    }
    await loom.stack.restart("orchestrator");
    // Still waiting for a person: the question is in the run's snapshot.
    expect(JSON.parse((await loom.cli(["runs", "get", runId, "--json"], { token })).stdout).state).toBe(
      "input-required",
    );

    // The new owner dispatches the step again; once the first call's claim lapses the tool is
    // called again, and its server asks again.
    const again = await nextQuestion(loom, runId, asked);
    expect(again).toMatchObject({
      statusUpdate: {
        status: { state: TaskState.INPUT_REQUIRED },
        metadata: { stepId: "form", elicitation: { server: "everything" } },
      },
    });

    const answered = await loom.cli(["runs", "input", runId, "--data", '{"name":"Grace Hopper"}'], { token });
    expect(answered.stderr).toBe("");
    const result = await watchRun(runId, followRun(jetstream(loom.observer), runId), () => {});
    expect(result.state).toBe(TaskState.COMPLETED);
    expect(result.output).toContain("- Name: Grace Hopper");
  });
});
