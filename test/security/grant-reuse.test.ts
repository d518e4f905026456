import { randomUUID } from "node:crypto";
import { Kvm } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Role } from "../../schemas/a2a.ts";
import { AgentTaskContract } from "../../schemas/contracts.ts";
import { StepRecordSchema, stepRecordKey } from "../../schemas/steps.ts";
import { agentTasksSubject, Buckets, LLM_AGENT } from "../../schemas/subjects.ts";
import { encodePayload, request } from "../../services/kit/index.ts";
import { AttackClass, attack, control } from "../helpers/attack-tally.ts";
import { type SecureStack, startSecureStack } from "../helpers/secure-stack.ts";

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
});
