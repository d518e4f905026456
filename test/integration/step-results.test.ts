import { setTimeout as sleep } from "node:timers/promises";
import { Kvm } from "@nats-io/kv";
import { describe, expect, it } from "vitest";
import { type Task, TaskState } from "../../schemas/a2a.ts";
import { ErrorCode } from "../../schemas/errors.ts";
import { type StepRecord, StepRecordSchema, stepRecordKey } from "../../schemas/steps.ts";
import { createLogger, encodePayload, LoomError, parsePayload } from "../../services/kit/index.ts";
import { StepResults } from "../../services/mcp-worker/step-results.ts";
import { connectTo, startNatsServer } from "../helpers/nats-server.ts";

const log = createLogger({ service: "step-results-test", level: "silent" });
const step = (attempt: number) => ({ runId: "run-1", stepId: "debit", attempt });
const task = (id: string): Task => ({
  id,
  contextId: "ctx",
  status: { state: TaskState.COMPLETED, timestamp: new Date().toISOString() },
});

/** A tool that counts its calls and answers after `delayMs`. */
function countingTool(delayMs = 0) {
  let calls = 0;
  return {
    calls: () => calls,
    work: async () => {
      calls++;
      await sleep(delayMs);
      return task(`call-${calls}`);
    },
  };
}

async function setup(name: string) {
  const ns = await startNatsServer();
  const nc = await connectTo(ns.url, { maxReconnectAttempts: -1 });
  const kv = await new Kvm(nc).create(name);
  const reinvocations: Array<{ key: string; previous: string }> = [];
  const worker = (id: string) =>
    new StepResults(kv, id, log, async (key, previous) => {
      reinvocations.push({ key, previous });
    });
  return {
    ns,
    kv,
    worker,
    reinvocations,
    async [Symbol.asyncDispose]() {
      await nc.close();
      await ns[Symbol.asyncDispose]();
    },
  };
}

describe("step results - a step's tool is called once wherever it can be known", () => {
  it("step results - a re-sent attempt waits for the earlier attempt's live claim and replays its outcome", async () => {
    await using env = await setup("steps_wait");
    const first = countingTool(600);
    const resent = countingTool();
    const running = env.worker("w-1").once(step(1), 10_000, first.work);
    await sleep(100);
    const replayed = await env.worker("w-2").once(step(2), 10_000, resent.work);
    expect((await running).id).toBe("call-1");
    expect(replayed.id).toBe("call-1");
    expect(resent.calls()).toBe(0);
    expect(env.reinvocations).toEqual([]);
  });

  it("step results - control: an attempt after an earlier attempt failed calls the tool", async () => {
    await using env = await setup("steps_failed");
    const failing = async (): Promise<Task> => {
      throw new LoomError(ErrorCode.TOOL_ERROR, "the tool said no");
    };
    await expect(env.worker("w-1").once(step(1), 10_000, failing)).rejects.toThrow("the tool said no");
    const retry = countingTool();
    expect((await env.worker("w-2").once(step(2), 10_000, retry.work)).id).toBe("call-1");
    expect(retry.calls()).toBe(1);
    expect(env.reinvocations).toEqual([]);
  });

  it("step results - a claim that lapsed without an outcome: the tool is called again and the re-invocation reported", async () => {
    await using env = await setup("steps_lapsed");
    const dead: StepRecord = {
      status: "running",
      worker: "w-dead",
      claimedAt: new Date(Date.now() - 60_000).toISOString(),
      leaseMs: 1_000,
    };
    await env.kv.create(stepRecordKey("run-1", "debit", 1), encodePayload(StepRecordSchema, dead, "step"));
    const again = countingTool();
    await env.worker("w-2").once(step(2), 10_000, again.work);
    expect(again.calls()).toBe(1);
    expect(env.reinvocations).toEqual([{ key: stepRecordKey("run-1", "debit", 2), previous: "w-dead" }]);
  });

  it("step results - the outcome is stored although the broker was SIGKILLed during the call", async () => {
    await using env = await setup("steps_outage");
    const slow = countingTool(300);
    const running = env.worker("w-1").once(step(1), 10_000, async () => {
      const result = await slow.work();
      await env.ns.kill();
      setTimeout(() => void env.ns.restart(), 1_000);
      return result;
    });
    expect((await running).id).toBe("call-1");
    const stored = await env.kv.get(stepRecordKey("run-1", "debit", 1));
    expect(parsePayload(StepRecordSchema, stored?.value ?? new Uint8Array(), "step").status).toBe(
      "succeeded",
    );
  });
});
