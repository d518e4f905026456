import { setTimeout as sleep } from "node:timers/promises";
import { Kvm } from "@nats-io/kv";
import { describe, expect, it } from "vitest";
import { TaskState } from "../../schemas/a2a.ts";
import { ErrorCode } from "../../schemas/errors.ts";
import type { RunRecord } from "../../schemas/run.ts";
import { casUpdate, casWrite, isBrokerFailure, LoomError } from "../../services/kit/index.ts";
import { DefinitionStore } from "../../services/orchestrator/definition-store.ts";
import { RunStore } from "../../services/orchestrator/run-store.ts";
import { connectTo, startNatsServer } from "../helpers/nats-server.ts";

const bytes = (text: string) => new TextEncoder().encode(text);

function runRecord(runId: string): RunRecord {
  const now = new Date().toISOString();
  return {
    runId,
    contextId: runId,
    workflowId: "w",
    input: {},
    state: TaskState.SUBMITTED,
    snapshot: null,
    pending: [],
    createdAt: now,
    updatedAt: now,
  };
}

describe("kv compare-and-set over a real nats-server", () => {
  it("kv cas - the first create wins, a second create and a stale update get undefined", async () => {
    await using ns = await startNatsServer();
    await using nc = await connectTo(ns.url);
    const kv = await new Kvm(nc).create("cas_first");
    const first = await casWrite(kv, "k", bytes("a"), undefined);
    expect(first).toBeGreaterThan(0);
    expect(await casWrite(kv, "k", bytes("b"), undefined)).toBeUndefined();
    const second = await casWrite(kv, "k", bytes("c"), first);
    expect(second).toBeGreaterThan(first ?? 0);
    // Control of the stale write: the revision it read is gone, so it must not land.
    expect(await casWrite(kv, "k", bytes("d"), first)).toBeUndefined();
    expect(new TextDecoder().decode((await kv.get("k"))?.value)).toBe("c");
  });

  it("kv cas - a write while the broker is SIGKILLed lands once it is back, not as a failure", async () => {
    await using ns = await startNatsServer();
    await using nc = await connectTo(ns.url, { maxReconnectAttempts: -1 });
    const kv = await new Kvm(nc).create("cas_outage");
    const revision = await casWrite(kv, "k", bytes("before"), undefined);
    await ns.kill();
    const writing = casWrite(kv, "k", bytes("during"), revision);
    await sleep(1_500);
    await ns.restart();
    expect(await writing).toBeGreaterThan(revision ?? 0);
    expect(new TextDecoder().decode((await kv.get("k"))?.value)).toBe("during");
  });

  it("kv cas - casUpdate re-reads after another writer and applies its change to the newest value", async () => {
    await using ns = await startNatsServer();
    await using nc = await connectTo(ns.url);
    const kv = await new Kvm(nc).create("cas_update");
    await kv.put("n", bytes("0"));
    const writers = Array.from({ length: 8 }, () =>
      casUpdate(kv, "n", (current) => bytes(String(Number(new TextDecoder().decode(current?.value)) + 1)), {
        attempts: 50,
        jitterMs: 5,
      }),
    );
    await Promise.all(writers);
    expect(new TextDecoder().decode((await kv.get("n"))?.value)).toBe("8");
    // Declining leaves the key as it is.
    expect(await casUpdate(kv, "n", () => undefined, { attempts: 1 })).toBeUndefined();
  });

  it("run store - a store that stays unreachable fails with the retryable BROKER_UNAVAILABLE, not INTERNAL", async () => {
    await using ns = await startNatsServer();
    const nc = await connectTo(ns.url, { maxReconnectAttempts: 0 });
    const kv = await new Kvm(nc).create("cas_store");
    const runs = new RunStore(kv, new DefinitionStore(kv));
    // Control: the store works while the broker is up.
    expect(await runs.create(runRecord("r-1"))).toBeDefined();
    await ns.kill();
    await nc.closed();
    const failure = await runs.create(runRecord("r-2")).catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(LoomError);
    expect((failure as LoomError).code).toBe(ErrorCode.BROKER_UNAVAILABLE);
    expect(isBrokerFailure((failure as LoomError).cause)).toBe(true);
  }, 60_000);
});
