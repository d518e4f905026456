import { once } from "node:events";
import { readFile } from "node:fs/promises";
import { setTimeout as sleep } from "node:timers/promises";
import { Kvm } from "@nats-io/kv";
import { describe, expect, it } from "vitest";
import { TERMINAL_STATES } from "../../schemas/a2a.ts";
import { RunRecordSchema } from "../../schemas/run.ts";
import { Buckets } from "../../schemas/subjects.ts";
import { ServiceName } from "../../services/cli/stack.ts";
import { describeFigures, settle, trackEnds, transfersInFlight } from "../helpers/fault-load.ts";
import { createTestLedger } from "../helpers/ledger.ts";
import { NatsUser, startLoom } from "../helpers/loom.ts";

const LEASE_MS = 1_500;
/** The bound: an orphan is adopted this soon after its lease lapsed and a replica is up. */
const ADOPTION_BOUND_MS = 2_000;

/** The `startup_ms` of each "started" line of a service's log. */
function startedLines(log: string): number[] {
  return [...log.matchAll(/"startup_ms":(\d+)[^\n]*"msg":"started"/g)].map((match) => Number(match[1]));
}

describe("fault - orphaned runs are adopted by a replica that has just started", () => {
  it("fault - the only orchestrator SIGKILLed mid-load: its replacement adopts every orphan within 2 s of its lease lapsing", async () => {
    await using ledger = await createTestLedger();
    await using loom = await startLoom({
      env: { LOOM_MCP_SERVERS: ledger.serversFile, LOOM_RUN_LEASE_MS: String(LEASE_MS), LOG_LEVEL: "info" },
      tools: ["ledger.append"],
    });
    const tracker = trackEnds(loom.observer);
    const load = transfersInFlight(await loom.connectAs(NatsUser.SUBMITTER), tracker, {
      count: 1_000,
      inFlight: 16,
    });
    while (tracker.ended() < 20) await sleep(20);
    const orchestrator = loom.stack.services.find((service) => service.name === ServiceName.ORCHESTRATOR);
    if (orchestrator === undefined) throw new Error("no orchestrator in the stack");
    const exited = once(orchestrator.process, "exit");
    orchestrator.process.kill("SIGKILL");
    await exited;
    load.stop();

    // The runs the dead replica held, and when each one's lease lapses.
    const runsKv = await new Kvm(loom.observer).open(Buckets.RUNS);
    const deadOwner = `-${orchestrator.process.pid}`;
    const orphans = new Map<string, { owner: string; leaseUntil: number }>();
    for (const runId of load.accepted) {
      const entry = await runsKv.get(runId);
      if (entry?.operation !== "PUT") continue;
      const record = RunRecordSchema.parse(entry.json());
      if (TERMINAL_STATES.has(record.state) || !record.owner?.endsWith(deadOwner)) continue;
      orphans.set(runId, { owner: record.owner, leaseUntil: Date.parse(record.leaseUntil ?? "") });
    }

    // The replacement logs into the same file: its own "started" line is the one after these.
    const startedBefore = startedLines(await readFile(orchestrator.logFile, "utf8")).length;
    const replacement = await loom.stack.restart(ServiceName.ORCHESTRATOR);
    const adoptedAt = new Map<string, number>();
    let readyAt: number | undefined;
    const deadline = Date.now() + 60_000;
    while (adoptedAt.size < orphans.size && Date.now() < deadline) {
      if (
        readyAt === undefined &&
        startedLines(await readFile(replacement.logFile, "utf8")).length > startedBefore
      )
        readyAt = Date.now();
      for (const [runId, orphan] of orphans) {
        if (adoptedAt.has(runId)) continue;
        const entry = await runsKv.get(runId);
        const record = entry?.operation === "PUT" ? RunRecordSchema.parse(entry.json()) : undefined;
        if (record !== undefined && record.owner !== orphan.owner) adoptedAt.set(runId, Date.now());
      }
      await sleep(50);
    }
    const delays = [...orphans].map(([runId, orphan]) =>
      Math.max(
        0,
        (adoptedAt.get(runId) ?? Number.POSITIVE_INFINITY) - Math.max(orphan.leaseUntil, readyAt ?? 0),
      ),
    );
    const figures = await settle(loom.observer, load.accepted, tracker, ledger, 120_000);
    tracker.stop();
    const startup = startedLines(await readFile(replacement.logFile, "utf8")).at(-1);
    console.log(
      describeFigures("orchestrator SIGKILLed, replacement adopts its orphans", figures, {
        orphans: orphans.size,
        replacementStartupMs: startup,
        adoptionDelayMaxMs: Math.max(...delays),
        adoptionDelaysMs: delays.sort((a, b) => a - b),
      }),
    );
    // Control: the crash left runs behind, and the replacement became ready.
    expect(orphans.size).toBeGreaterThan(0);
    expect(readyAt).toBeDefined();
    expect(Math.max(...delays)).toBeLessThanOrEqual(ADOPTION_BOUND_MS);
    expect({
      lost: figures.lost,
      stuck: figures.stuck,
      doubled: figures.doubled,
      failed: figures.failed,
    }).toEqual({
      lost: 0,
      stuck: 0,
      doubled: 0,
      failed: 0,
    });
  }, 240_000);
});
