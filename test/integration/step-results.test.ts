import { setTimeout as sleep } from "node:timers/promises";
import { Kvm } from "@nats-io/kv";
import { describe, expect, it } from "vitest";
import { type Task, TaskState } from "../../schemas/a2a.ts";
import { ErrorCode } from "../../schemas/errors.ts";
import { StepRecordSchema, stepRecordKey } from "../../schemas/steps.ts";
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

/** Claim options for a grant `id`; `refused` counts the reuses refused, `replays` the stored outcomes answered with. */
function grant(id: string) {
  let refused = 0;
  let replays = 0;
  return {
    refused: () => refused,
    replays: () => replays,
    replayed: () => {
      replays++;
    },
    leaseMs: 10_000,
    grant: {
      id,
      refuseReuse: async () => {
        refused++;
        return new LoomError(ErrorCode.GRANT_REFUSED, "the grant has already been used");
      },
    },
  };
}

/** A claim of `worker`, with `grants` used on it, whose lease ran out a minute ago. */
const lapsedClaim = (worker: string, grants: string[]) =>
  encodePayload(
    StepRecordSchema,
    {
      status: "running",
      worker,
      claimedAt: new Date(Date.now() - 60_000).toISOString(),
      leaseMs: 1_000,
      grants,
    },
    "step",
  );

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
    const firstGrant = grant("g-1");
    const resentGrant = grant("g-2");
    const running = env.worker("w-1").once(step(1), firstGrant, first.work);
    await sleep(100);
    const replayed = await env.worker("w-2").once(step(2), resentGrant, resent.work);
    expect((await running).id).toBe("call-1");
    expect(replayed.id).toBe("call-1");
    expect(resent.calls()).toBe(0);
    // The re-sent attempt says it was answered from the ledger; the first one ran.
    expect([firstGrant.replays(), resentGrant.replays()]).toEqual([0, 1]);
    expect(env.reinvocations).toEqual([]);
  });

  it("step results - control: an attempt after an earlier attempt failed calls the tool", async () => {
    await using env = await setup("steps_failed");
    const failing = async (): Promise<Task> => {
      throw new LoomError(ErrorCode.TOOL_ERROR, "the tool said no");
    };
    await expect(env.worker("w-1").once(step(1), grant("g-1"), failing)).rejects.toThrow("the tool said no");
    const retry = countingTool();
    const retryGrant = grant("g-2");
    expect((await env.worker("w-2").once(step(2), retryGrant, retry.work)).id).toBe("call-1");
    expect(retry.calls()).toBe(1);
    expect(retryGrant.replays()).toBe(0);
    expect(env.reinvocations).toEqual([]);
  });

  it("step results - a claim that lapsed without an outcome: the tool is called again and the re-invocation reported", async () => {
    await using env = await setup("steps_lapsed");
    await env.kv.create(stepRecordKey("run-1", "debit", 1), lapsedClaim("w-dead", ["g-1"]));
    const again = countingTool();
    await env.worker("w-2").once(step(2), grant("g-2"), again.work);
    expect(again.calls()).toBe(1);
    expect(env.reinvocations).toEqual([{ key: stepRecordKey("run-1", "debit", 2), previous: "w-dead" }]);
  });

  it("step results - the outcome is stored although the broker was SIGKILLed during the call", async () => {
    await using env = await setup("steps_outage");
    const slow = countingTool(300);
    const running = env.worker("w-1").once(step(1), grant("g-1"), async () => {
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

  it("step results - a grant named on its attempt's lapsed claim is refused and runs nothing; a new grant takes over", async () => {
    await using env = await setup("steps_grant_reuse");
    const key = stepRecordKey("run-1", "debit", 1);
    await env.kv.create(key, lapsedClaim("w-dead", ["g-1"]));
    const tool = countingTool();
    const replayed = grant("g-1");
    await expect(env.worker("w-2").once(step(1), replayed, tool.work)).rejects.toMatchObject({
      code: ErrorCode.GRANT_REFUSED,
    });
    expect(tool.calls()).toBe(0);
    expect(replayed.refused()).toBe(1);
    expect(env.reinvocations).toEqual([]);
    // Control: the attempt's new grant (a re-decision after the crash) takes the lapsed claim over.
    expect((await env.worker("w-3").once(step(1), grant("g-2"), tool.work)).id).toBe("call-1");
    expect(env.reinvocations).toEqual([{ key, previous: "w-dead" }]);
    // The first grant stays used after the takeover: re-sent now, it replays and runs nothing.
    const resent = grant("g-1");
    expect((await env.worker("w-4").once(step(1), resent, tool.work)).id).toBe("call-1");
    expect(tool.calls()).toBe(1);
    expect(resent.replays()).toBe(1);
  });

  it("step results - a grant whose claim another worker took over after it lapsed is still refused", async () => {
    await using env = await setup("steps_grant_chain");
    const key = stepRecordKey("run-1", "debit", 1);
    // g-1's claim lapsed, g-2's takeover lapsed too: g-1 is no more the claim's latest grant.
    await env.kv.create(key, lapsedClaim("w-2", ["g-1", "g-2"]));
    const tool = countingTool();
    for (const used of ["g-1", "g-2"]) {
      await expect(env.worker("w-3").once(step(1), grant(used), tool.work)).rejects.toMatchObject({
        code: ErrorCode.GRANT_REFUSED,
      });
    }
    expect(tool.calls()).toBe(0);
    const stored = await env.kv.get(key);
    expect(parsePayload(StepRecordSchema, stored?.value ?? new Uint8Array(), "step")).toMatchObject({
      worker: "w-2",
      grants: ["g-1", "g-2"],
    });
  });
});
