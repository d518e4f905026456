import { randomUUID } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { Kvm } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Role } from "../../schemas/a2a.ts";
import { AuditKind, type AuditRecord, AuditRecordSchema } from "../../schemas/audit.ts";
import { AgentTaskContract, ToolStatsContract } from "../../schemas/contracts.ts";
import { StepRecordSchema, stepRecordKey } from "../../schemas/steps.ts";
import { agentTasksSubject, Buckets, Headers, LLM_AGENT, Subjects } from "../../schemas/subjects.ts";
import { encodePayload, request } from "../../services/kit/index.ts";
import { AttackClass, attack, control } from "../helpers/attack-tally.ts";
import { storedAudit } from "../helpers/audit.ts";
import { type SecureStack, startSecureStack } from "../helpers/secure-stack.ts";
import { tokenFor } from "../helpers/tokens.ts";

/**
 * A grant authorises one execution of one attempt: re-sent under other attempt numbers, again
 * under its own, all at once, or to another kind of task, it runs nothing more. Counted on a real
 * MCP server that logs every execution.
 */
describe("security - grant reuse against a stack with a NATS user per service", () => {
  let loom: SecureStack;
  let nc: NatsConnection;
  beforeAll(async () => {
    loom = await startSecureStack();
    // The bus user that may send tasks to the worker: whoever captured a grant replays it from here.
    nc = await loom.as("orchestrator");
  }, 90_000);
  afterAll(async () => {
    await loom?.[Symbol.asyncDispose]();
  });

  it("grants - one decision, the task re-sent with attempts 1..125, executes exactly once", async () => {
    const runId = `reuse-${randomUUID()}`;
    const { grant } = await loom.decideRead(nc, runId, "g-1");
    const before = await loom.executions();
    await control("the granted attempt executes", async () => {
      return (await loom.sendTask({ runId, id: "g-1", attempt: 1, grant })) === "ok";
    });
    await attack(
      AttackClass.GRANT_REUSE,
      "a grant re-sent with attempts 2..125 executes nothing",
      async () => {
        const outcomes = await Promise.all(
          Array.from({ length: 124 }, (_, i) => loom.sendTask({ runId, id: "g-1", attempt: i + 2, grant })),
        );
        return outcomes.every((code) => code === "GRANT_REFUSED") && (await loom.executions()) === before + 1;
      },
    );
    await attack(
      AttackClass.GRANT_REUSE,
      "the same grant and attempt again replays, never re-executes",
      async () => {
        await loom.sendTask({ runId, id: "g-1", attempt: 1, grant });
        return (await loom.executions()) === before + 1;
      },
    );
  });

  it("grants - the same grant sent 20 times at once executes once", async () => {
    const runId = `burst-${randomUUID()}`;
    const { grant } = await loom.decideRead(nc, runId, "g-2");
    const before = await loom.executions();
    await attack(
      AttackClass.GRANT_REUSE,
      "20 concurrent copies of one task and grant execute once",
      async () => {
        await Promise.all(
          Array.from({ length: 20 }, () => loom.sendTask({ runId, id: "g-2", attempt: 1, grant })),
        );
        return (await loom.executions()) === before + 1;
      },
    );
  });

  it("grants - a tool call's grant opens no read, prompt or sampling task", async () => {
    const runId = `paths-${randomUUID()}`;
    const { grant } = await loom.decideRead(nc, runId, "g-3");
    const before = await loom.executions();
    await attack(
      AttackClass.GRANT_REUSE,
      "a tools.call grant replayed to a resource read is refused",
      async () => {
        const code = await loom.sendTask({
          runId,
          id: "g-3",
          attempt: 1,
          grant,
          part: { data: { server: "gauges", resource: "gauges://sheets/g-3" } },
        });
        return code === "GRANT_REFUSED" && (await loom.executions()) === before;
      },
    );
    await attack(AttackClass.GRANT_REUSE, "a tools.call grant replayed to a prompt is refused", async () => {
      const code = await loom.sendTask({
        runId,
        id: "g-3",
        attempt: 1,
        grant,
        part: { data: { server: "gauges", prompt: "summary", arguments: { id: "g-3" } } },
      });
      return code === "GRANT_REFUSED";
    });
    await attack(
      AttackClass.GRANT_REUSE,
      "a tools.call grant replayed to the llm agent is refused",
      async () => {
        try {
          await request(
            nc,
            agentTasksSubject(LLM_AGENT),
            AgentTaskContract,
            {
              messageId: randomUUID(),
              role: Role.USER,
              parts: [
                {
                  data: {
                    server: "gauges",
                    params: {
                      messages: [{ role: "user", content: { type: "text", text: "hi" } }],
                      maxTokens: 10,
                    },
                  },
                },
              ],
              metadata: { runId, stepId: "gauge", grant },
            },
            { timeoutMs: 10_000 },
          );
          return false;
        } catch (error) {
          return (error as { code?: string }).code === "GRANT_REFUSED";
        }
      },
    );
    await control("the grant still serves its own call once", async () => {
      return (await loom.sendTask({ runId, id: "g-3", attempt: 1, grant })) === "ok";
    });
    expect(await loom.executions()).toBe(before + 1);
  });

  it("grants - a grant whose step claim lapsed (its worker died mid-call) is refused; a new decision runs", async () => {
    const runId = `lapsed-${randomUUID()}`;
    const { grant } = await loom.decideRead(nc, runId, "g-4");
    const jti = JSON.parse(Buffer.from(grant?.split(".")[1] ?? "", "base64url").toString()).jti as string;
    // What a worker leaves behind when SIGKILLed after claiming the attempt with this grant.
    const steps = await new Kvm(await loom.as("mcp-worker")).open(Buckets.STEPS);
    const claim = {
      status: "running" as const,
      worker: "mcp-worker-dead",
      claimedAt: new Date(Date.now() - 120_000).toISOString(),
      leaseMs: 1_000,
      grants: [jti],
    };
    await steps.create(stepRecordKey(runId, "gauge", 1), encodePayload(StepRecordSchema, claim, "step"));
    const before = await loom.executions();
    await attack(
      AttackClass.GRANT_REUSE,
      "the used grant of a lapsed claim, re-sent, is refused and executes nothing",
      async () => {
        const code = await loom.sendTask({ runId, id: "g-4", attempt: 1, grant });
        return code === "GRANT_REFUSED" && (await loom.executions()) === before;
      },
    );
    await control(
      "a new decision for the same attempt takes the lapsed claim over and runs once",
      async () => {
        const fresh = await loom.decideRead(nc, runId, "g-4");
        const code = await loom.sendTask({ runId, id: "g-4", attempt: 1, grant: fresh.grant });
        return code === "ok" && (await loom.executions()) === before + 1;
      },
    );
    await attack(
      AttackClass.GRANT_REUSE,
      "the lapsed claim's grant, re-sent after the takeover, replays and executes nothing more",
      async () => {
        await loom.sendTask({ runId, id: "g-4", attempt: 1, grant });
        return (await loom.executions()) === before + 1;
      },
    );
  });

  it("grants - a forwarded task replayed with its spent grant is audited as a replay, never as an execution", async () => {
    const runId = `replayed-${randomUUID()}`;
    const replays = 3;
    const { grant } = await loom.decideRead(nc, runId, "g-5");
    // policy-admin reads the audit trail (as `loom audit tail` does); the worker's records of this run.
    const auditor = await loom.as("policy-admin");
    const workerRecords = async (): Promise<AuditRecord[]> =>
      (await storedAudit(auditor))
        .map(({ data }) => AuditRecordSchema.parse(JSON.parse(new TextDecoder().decode(data))))
        .filter((record) => record.service === "mcp-worker" && record.runId === runId);
    /** The worker's records of the run once `count` are stored (they follow the answers), and any beyond. */
    const settledRecords = async (count: number): Promise<AuditRecord[]> => {
      const deadline = Date.now() + 10_000;
      while ((await workerRecords()).length < count && Date.now() < deadline) await sleep(100);
      await sleep(500);
      return workerRecords();
    };
    const ofKind = (records: AuditRecord[], kind: AuditKind) =>
      records.filter((record) => record.kind === kind);
    // `loom tools stats` over the last hour, asked as a submitter: calls of gauges.read_gauge.
    const submitter = await loom.as("submitter");
    const statsCalls = async () => {
      const stats = await request(
        submitter,
        Subjects.TOOLS_STATS,
        ToolStatsContract,
        { sinceMs: 3_600_000 },
        {
          timeoutMs: 15_000,
          headers: { [Headers.AUTHORIZATION]: `Bearer ${tokenFor("ann", "analyst")}` },
        },
      );
      return stats.rows
        .filter((row) => row.server === "gauges" && row.target === "read_gauge")
        .reduce((sum, row) => sum + row.calls, 0);
    };
    const executionsBefore = await loom.executions();
    const statsBefore = await statsCalls();

    await control("the first execution is recorded as one, with the version that served it", async () => {
      const code = await loom.sendTask({ runId, id: "g-5", attempt: 1, grant });
      const records = await settledRecords(1);
      const [execution] = ofKind(records, AuditKind.TOOL_EXECUTION);
      return (
        code === "ok" &&
        records.length === 1 &&
        execution?.outcome === "ok" &&
        execution.serverVersion !== undefined &&
        (await loom.executions()) === executionsBefore + 1
      );
    });
    await attack(
      AttackClass.GRANT_REUSE,
      `the captured task re-published ${replays} times as acp-policy is audited as ${replays} replays and no execution`,
      async () => {
        for (let i = 0; i < replays; i++) await loom.sendTask({ runId, id: "g-5", attempt: 1, grant });
        const records = await settledRecords(1 + replays);
        const replayed = ofKind(records, AuditKind.TOOL_REPLAY);
        return (
          ofKind(records, AuditKind.TOOL_EXECUTION).length === 1 &&
          replayed.length === replays &&
          replayed.every((record) => record.serverVersion === undefined && record.argsDigest !== undefined) &&
          records.length === 1 + replays &&
          (await loom.executions()) === executionsBefore + 1
        );
      },
    );
    await attack(AttackClass.GRANT_REUSE, "loom tools stats counts the replays as no calls", async () => {
      return (await statsCalls()) === statsBefore + 1;
    });
  });
});
