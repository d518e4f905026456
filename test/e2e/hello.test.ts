import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { headers } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TaskState } from "../../schemas/a2a.ts";
import { AuditRecordSchema } from "../../schemas/audit.ts";
import { Headers, Streams, Subjects } from "../../schemas/subjects.ts";
import { followRun, watchRun } from "../../services/kit/run-watch.ts";
import { type Loom, NatsUser, startLoom, tokenFor } from "../helpers/loom.ts";

const analyst = tokenFor("alice", "analyst");
const contractor = tokenFor("bob", "contractor");

describe("e2e - the hello workflow through the CLI", () => {
  let loom: Loom;
  beforeAll(async () => {
    loom = await startLoom();
  });
  afterAll(async () => {
    await loom?.[Symbol.asyncDispose]();
  });

  async function submitHello(token: string | undefined, input = '{"contactId":"c-1"}') {
    const result = await loom.cli(
      ["submit", "hello", "--input", input, "--watch", "--json"],
      token ? { token } : {},
    );
    return { ...result, summary: JSON.parse(result.stdout.trim().split("\n").at(-1) ?? "{}") };
  }

  it("e2e - hello (time then crm) completes with the tools' output", async () => {
    const { code, summary } = await submitHello(analyst);
    expect(summary.state).toBe("completed");
    expect(code).toBe(0);
    expect(summary.output.greeting).toBe("Hello, Ada Lovelace");
    expect(summary.output.region).toBe("eu");
    expect(Date.parse(summary.output.at)).toBeGreaterThan(Date.now() - 60_000);

    const get = await loom.cli(["runs", "get", summary.runId, "--json"], { token: analyst });
    expect(get.code).toBe(0);
    const record = JSON.parse(get.stdout);
    expect(record).toMatchObject({
      runId: summary.runId,
      workflowId: "hello",
      workflowVersion: 1,
      state: "completed",
    });
    expect(record.output.greeting).toBe("Hello, Ada Lovelace");
    expect(record).not.toHaveProperty("authorization");
  });

  it("e2e - --watch prints each status change and the final output as text", async () => {
    const { code, stdout } = await loom.cli(
      ["submit", "hello", "--input", '{"contactId":"c-2"}', "--watch"],
      {
        token: analyst,
      },
    );
    expect(code).toBe(0);
    const states = stdout
      .split("\n")
      .map((line) => /^\d\d:\d\d:\d\d {2}(\S+)/.exec(line)?.[1])
      .filter(Boolean);
    expect(states).toEqual(["submitted", "working", "working", "completed"]);
    expect(stdout).toContain("step contact: calling crm.get_contact");
    expect(stdout).toContain('"greeting": "Hello, Grace Hopper"');
  });

  it("e2e - a role the policy does not allow ends rejected, naming the rule", async () => {
    const { code, summary } = await submitHello(contractor);
    expect(code).toBe(2);
    expect(summary.state).toBe("rejected");
    expect(summary.error.code).toBe("POLICY_DENIED");
    expect(summary.error.details.rule).toBe("contractors-no-crm");

    const text = await loom.cli(["submit", "hello", "--input", '{"contactId":"c-1"}', "--watch"], {
      token: contractor,
    });
    expect(text.code).toBe(2);
    expect(text.stdout).toMatch(/rejected .*contractors-no-crm/);
  });

  it("e2e - a caller without a token cannot follow what it sent: --watch says how to pass one", async () => {
    const result = await loom.cli(["submit", "hello", "--input", '{"contactId":"c-1"}', "--watch", "--json"]);
    // A refusal exits 2, as the exit-code table says.
    expect(result.code).toBe(2);
    expect(result.stdout).toBe("");
    expect(result.stderr).toContain(
      "error UNAUTHENTICATED: no token presented; pass --token or set LOOM_TOKEN",
    );
  });

  it("e2e - an unknown workflow gets a typed error and the next good run still completes", async () => {
    const unknown = await loom.cli(["submit", "no-such-workflow", "--watch", "--json"], { token: analyst });
    expect(unknown.code).toBe(1);
    const summary = JSON.parse(unknown.stdout);
    expect(summary.state).toBe("failed");
    expect(summary.error.code).toBe("UNKNOWN_WORKFLOW");
    expect(summary.error.message).toContain("no-such-workflow");

    expect((await submitHello(analyst)).summary.state).toBe("completed");
  });

  it("e2e - input that breaks the workflow's input schema is refused with INVALID_INPUT", async () => {
    const { code, summary } = await submitHello(analyst, '{"contact":"c-1"}');
    expect(code).toBe(1);
    expect(summary.error.code).toBe("INVALID_INPUT");
    expect(summary.error.message).toContain("contactId");
  });

  it("e2e - malformed submissions get typed error events and every service keeps serving", async () => {
    const submitter = jetstream(await loom.connectAs(NatsUser.SUBMITTER));
    const js = jetstream(loom.observer);
    const garbage = [
      { runId: "malformed-not-json", body: "{not json" },
      { runId: "malformed-bad-shape", body: JSON.stringify({ runId: "malformed-bad-shape", workflow: 42 }) },
    ];
    for (const { runId, body } of garbage) {
      const watching = watchRun(runId, followRun(js, runId), () => {});
      const h = headers();
      h.set(Headers.AUTHORIZATION, `Bearer ${analyst}`);
      await submitter.publish(Subjects.RUNS_SUBMIT, body, { msgID: runId, headers: h });
      const result = await watching;
      expect(result.state).toBe(TaskState.FAILED);
      const final = result.events.at(-1);
      expect(final && "statusUpdate" in final && final.statusUpdate.metadata?.error).toMatchObject({
        code: "INVALID_MESSAGE",
      });
    }
    expect((await submitHello(analyst)).summary.state).toBe("completed");
    for (const service of loom.stack.services) expect(service.process.exitCode).toBeNull();
  });

  it("e2e - the same submission published twice runs once", async () => {
    const submitter = jetstream(await loom.connectAs(NatsUser.SUBMITTER));
    const js = jetstream(loom.observer);
    const runId = "dedupe-check";
    const body = JSON.stringify({ runId, workflow: "hello", input: { contactId: "c-3" } });
    const h = headers();
    h.set(Headers.AUTHORIZATION, `Bearer ${analyst}`);
    const first = await submitter.publish(Subjects.RUNS_SUBMIT, body, { msgID: runId, headers: h });
    const second = await submitter.publish(Subjects.RUNS_SUBMIT, body, { msgID: runId, headers: h });
    expect(second.duplicate).toBe(true);
    expect(second.seq).toBe(first.seq);
    const result = await watchRun(runId, followRun(js, runId), () => {});
    expect(result.state).toBe(TaskState.COMPLETED);
  });

  it("e2e - loom tools list shows the demo tools with their governance metadata", async () => {
    const { code, stdout } = await loom.cli(["tools", "list"]);
    expect(code).toBe(0);
    // crm is governed as `write`: it has delete_record.
    expect(stdout).toMatch(/crm\.get_contact\s+restricted\s+write\s+sales-ops/);
    expect(stdout).toMatch(/time\.get_time\s+public\s+read\s+platform-team/);
  });

  it("e2e - every policy decision is in the audit stream, which refuses deletes", async () => {
    const jsm = await jetstreamManager(loom.observer);
    const info = await jsm.streams.info(Streams.AUDIT);
    expect(info.config.deny_delete).toBe(true);
    expect(info.config.deny_purge).toBe(true);
    const records = [];
    for (let seq = 1; seq <= info.state.last_seq; seq++) {
      const message = await jsm.streams.getMessage(Streams.AUDIT, { seq });
      records.push(AuditRecordSchema.parse(message?.json()));
    }
    expect(records.some((record) => record.effect === "deny" && record.rule === "contractors-no-crm")).toBe(
      true,
    );
    expect(records.some((record) => record.effect === "allow" && record.resource === "crm.get_contact")).toBe(
      true,
    );
    await expect(jsm.streams.deleteMessage(Streams.AUDIT, 1)).rejects.toThrow();
  });
});
