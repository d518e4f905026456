import { randomUUID } from "node:crypto";
import { DeliverPolicy, jetstream } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PolicyDecideContract } from "../../schemas/contracts.ts";
import { type PolicyDecisionRequest, PolicyEffect } from "../../schemas/policy.ts";
import {
  type RunRecord,
  RunRecordSchema,
  type RunSubmission,
  RunSubmissionSchema,
} from "../../schemas/run.ts";
import { Buckets, Headers, Streams, Subjects } from "../../schemas/subjects.ts";
import { encodePayload, parsePayload, request, tracedHeaders } from "../../services/kit/index.ts";
import { AttackClass, attack, control } from "../helpers/attack-tally.ts";
import { serviceLogs } from "../helpers/nats-users.ts";
import { type SecureStack, startSecureStack } from "../helpers/secure-stack.ts";
import { tokenFor } from "../helpers/tokens.ts";

/** A workflow an analyst may run: one gauge read. */
const GAUGE_WORKFLOW = {
  id: "gauge-once",
  version: 1,
  steps: [{ id: "gauge", call: "gauges.read_gauge", with: { id: "g-1" } }],
};
/** What an escalation would run: admins only (rule only-admins-delete). */
const DELETE_WORKFLOW = {
  id: "escalate",
  version: 1,
  steps: [{ id: "delete", call: "crm.delete_record", with: { id: "c-1" } }],
};

/**
 * A run token is bound to one run, workflow and version, good only when the orchestrator presents
 * it on `loom.v1.policy.decide.run`, and kept where only the orchestrator reads it. Every place a
 * submitter (or another service) could read is searched for it; a stolen one is tried everywhere.
 */
describe("security - run tokens against a stack with a NATS user per service", () => {
  let loom: SecureStack;
  let orchestrator: NatsConnection;
  let submitter: NatsConnection;
  let worker: NatsConnection;
  let runId: string;
  let runToken: string;

  const submit = async (nc: NatsConnection, submission: RunSubmission, authorization: string) =>
    jetstream(nc).publish(
      Subjects.RUNS_SUBMIT,
      encodePayload(RunSubmissionSchema, submission, "submission"),
      {
        msgID: submission.runId,
        headers: tracedHeaders({ [Headers.AUTHORIZATION]: authorization }),
      },
    );

  /** The run's record as the orchestrator stores it (a submitter reads none), once it has ended. */
  const ended = async (nc: NatsConnection, id: string): Promise<RunRecord> => {
    const kv = await new Kvm(nc).open(Buckets.RUNS);
    for (let i = 0; i < 150; i++) {
      const entry = await kv.get(id);
      if (entry?.operation === "PUT") {
        const record = parsePayload(RunRecordSchema, entry.value, "run");
        if (/COMPLETED|FAILED|REJECTED|CANCELED/.test(record.state)) return record;
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    throw new Error(`run ${id} did not end`);
  };

  const decideRun = (nc: NatsConnection, subject: string, body: PolicyDecisionRequest, token = runToken) =>
    request(nc, subject, PolicyDecideContract, body, {
      timeoutMs: 3_000,
      headers: { [Headers.AUTHORIZATION]: `Bearer ${token}` },
    });
  const ownStep: PolicyDecisionRequest = {
    action: "tools.call",
    resource: { tool: "gauges.read_gauge" },
    arguments: { id: "g-1" },
    stepId: "gauge",
    attempt: 2,
  };
  const refused = async (asked: Promise<{ effect: string }>) => {
    try {
      return (await asked).effect === PolicyEffect.DENY;
    } catch {
      return true;
    }
  };

  beforeAll(async () => {
    loom = await startSecureStack();
    orchestrator = await loom.as("orchestrator");
    submitter = await loom.as("submitter");
    worker = await loom.as("mcp-worker");
    runId = `rt-${randomUUID()}`;
    await submit(
      submitter,
      { runId, workflow: GAUGE_WORKFLOW, input: {} },
      `Bearer ${tokenFor("ann", "analyst")}`,
    );
    // The orchestrator's own store: a thief's best case is to have it.
    const tokens = await new Kvm(orchestrator).open(Buckets.RUN_TOKENS);
    for (let i = 0; i < 100 && runToken === undefined; i++) {
      const entry = await tokens.get(runId);
      if (entry?.operation === "PUT") runToken = entry.string();
      else await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }, 90_000);
  afterAll(async () => {
    await loom?.[Symbol.asyncDispose]();
  });

  it("run tokens - the run completes, and its token is nowhere a submitter or another service reads", async () => {
    await control("the analyst's run completes", async () =>
      (await ended(orchestrator, runId)).state.endsWith("COMPLETED"),
    );
    expect(runToken).toMatch(/^ey/);
    // Read as the orchestrator, which owns them: the submitter may read neither record nor event.
    await attack(AttackClass.RUN_TOKENS, "the run's record in loom_runs holds no run token", async () => {
      const entry = await (await new Kvm(orchestrator).open(Buckets.RUNS)).get(runId);
      return (
        entry !== null && !entry.string().includes(runToken) && !entry.string().includes("authorization")
      );
    });
    await attack(AttackClass.RUN_TOKENS, "the run's events hold no run token", async () => {
      const consumer = await jetstream(orchestrator).consumers.get(Streams.EVENTS, {
        deliver_policy: DeliverPolicy.All,
        filter_subjects: `loom.v1.runs.${runId}.events`,
      });
      const messages = await consumer.fetch({ max_messages: 100, expires: 2_000 });
      let text = "";
      for await (const message of messages) text += message.string() + JSON.stringify(message.headers ?? {});
      return text.length > 0 && !text.includes(runToken);
    });
    await attack(AttackClass.RUN_TOKENS, "no service log holds the run token", async () => {
      return !(await serviceLogs(loom.logDir)).includes(runToken);
    });
    for (const user of ["submitter", "mcp-worker", "llm-agent", "acp-policy"] as const) {
      await attack(AttackClass.RUN_TOKENS, `the ${user} user cannot read loom_run_tokens`, async () => {
        const nc = await loom.as(user);
        try {
          const entry = await (await new Kvm(nc).open(Buckets.RUN_TOKENS)).get(runId);
          return entry === null;
        } catch {
          return true;
        }
      });
    }
  });

  it("run tokens - a submission reusing another caller's run id changes neither its token nor its run", async () => {
    await control("the analyst's run completes", async () =>
      (await ended(orchestrator, runId)).state.endsWith("COMPLETED"),
    );
    const tokens = await new Kvm(orchestrator).open(Buckets.RUN_TOKENS);
    const runs = await new Kvm(orchestrator).open(Buckets.RUNS);
    const before = await tokens.get(runId);
    const jsm = await jetstream(orchestrator).jetstreamManager();
    const settled = async () => {
      for (let i = 0; i < 100; i++) {
        const info = await jsm.consumers.info(Streams.RUNS, "orchestrator-submissions");
        if (info.num_pending === 0 && info.num_ack_pending === 0) return;
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      throw new Error("the orchestrator did not take the submission");
    };
    for (const [how, msgID] of [
      ["under a fresh message id", `reuse-${randomUUID()}`],
      ["under a message id of another run", randomUUID()],
    ] as const) {
      await attack(AttackClass.RUN_TOKENS, `another analyst resubmits the run's id ${how}`, async () => {
        await jetstream(submitter).publish(
          Subjects.RUNS_SUBMIT,
          encodePayload(RunSubmissionSchema, { runId, workflow: GAUGE_WORKFLOW, input: {} }, "submission"),
          {
            msgID,
            headers: tracedHeaders({ [Headers.AUTHORIZATION]: `Bearer ${tokenFor("mallory", "analyst")}` }),
          },
        );
        await settled();
        const after = await tokens.get(runId);
        const record = parsePayload(
          RunRecordSchema,
          (await runs.get(runId))?.value ?? new Uint8Array(),
          "run",
        );
        return (
          after?.revision === before?.revision &&
          after?.string() === runToken &&
          record.startedBy === "ann" &&
          record.state.endsWith("COMPLETED")
        );
      });
    }
  });

  it("run tokens - a stolen run token is refused for another run, workflow, version, a submission and a direct decide", async () => {
    const runWorkflow = { id: GAUGE_WORKFLOW.id, version: 1 };
    await control("the orchestrator decides its run's own step with it", async () => {
      const decision = await decideRun(orchestrator, Subjects.POLICY_DECIDE_RUN, {
        ...ownStep,
        runId,
        runWorkflow,
      });
      return decision.effect === PolicyEffect.ALLOW;
    });
    await attack(AttackClass.RUN_TOKENS, "decided for another run", async () =>
      refused(
        decideRun(orchestrator, Subjects.POLICY_DECIDE_RUN, {
          ...ownStep,
          runId: `rt-${randomUUID()}`,
          runWorkflow,
        }),
      ),
    );
    await attack(AttackClass.RUN_TOKENS, "decided for another workflow", async () =>
      refused(
        decideRun(orchestrator, Subjects.POLICY_DECIDE_RUN, {
          ...ownStep,
          runId,
          runWorkflow: { id: "escalate", version: 1 },
        }),
      ),
    );
    await attack(AttackClass.RUN_TOKENS, "decided for another version of its workflow", async () =>
      refused(
        decideRun(orchestrator, Subjects.POLICY_DECIDE_RUN, {
          ...ownStep,
          runId,
          runWorkflow: { ...runWorkflow, version: 2 },
        }),
      ),
    );
    await attack(
      AttackClass.RUN_TOKENS,
      "presented on the public decide subject by another service",
      async () => refused(decideRun(worker, Subjects.POLICY_DECIDE, { ...ownStep, runId, runWorkflow })),
    );
    await attack(
      AttackClass.RUN_TOKENS,
      "presented on the orchestrator's decide subject by another service",
      async () => refused(decideRun(worker, Subjects.POLICY_DECIDE_RUN, { ...ownStep, runId, runWorkflow })),
    );
    await attack(
      AttackClass.RUN_TOKENS,
      "a submission with another inline workflow is rejected",
      async () => {
        const stolenRun = `rt-${randomUUID()}`;
        await submit(
          submitter,
          { runId: stolenRun, workflow: DELETE_WORKFLOW, input: {} },
          `Bearer ${runToken}`,
        );
        const record = await ended(orchestrator, stolenRun);
        return record.state.endsWith("REJECTED") && /run token/.test(record.error?.message ?? "");
      },
    );
    await attack(
      AttackClass.RUN_TOKENS,
      "a submitter cannot submit a delegated child run with it",
      async () => {
        try {
          await jetstream(submitter).publish(
            Subjects.RUNS_DELEGATED,
            encodePayload(
              RunSubmissionSchema,
              { runId: `rt-${randomUUID()}`, workflow: DELETE_WORKFLOW, input: {} },
              "s",
            ),
            { timeout: 3_000 },
          );
          return false;
        } catch {
          return true;
        }
      },
    );
  });
});
