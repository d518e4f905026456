import { once } from "node:events";
import { setTimeout as sleep } from "node:timers/promises";
import { describe, expect, it } from "vitest";
import { describeFigures, settle, trackEnds, transfersInFlight } from "../helpers/fault-load.ts";
import { createTestLedger } from "../helpers/ledger.ts";
import { NatsUser, startLoom } from "../helpers/loom.ts";

const KILL_EVERY_MS = 2_000;
const KILLING_FOR_MS = 60_000;
/**
 * Kills per window in which some run must have ended: progress during the kills, not after them.
 * About 20 s: in a loaded full run the first five restarts sometimes end no run (alone, hundreds).
 */
const WINDOW_KILLS = 10;

describe("fault - an orchestrator that crash-loops", () => {
  it("fault - the orchestrator SIGKILLed every 2 s for 60 s: runs keep completing during the kills", async () => {
    await using ledger = await createTestLedger();
    await using loom = await startLoom({
      env: {
        LOOM_MCP_SERVERS: ledger.serversFile,
        LOOM_RUN_LEASE_MS: "1500",
        LOOM_STEP_TIMEOUT_MS: "5000",
        LOG_LEVEL: "info",
      },
      tools: ["ledger.append"],
    });
    const tracker = trackEnds(loom.observer);
    const load = transfersInFlight(await loom.connectAs(NatsUser.SUBMITTER), tracker, {
      count: 100_000,
      inFlight: 16,
      endTimeoutMs: 120_000,
    });
    const endedAtKill: number[] = [];
    const started = Date.now();
    while (Date.now() - started < KILLING_FOR_MS) {
      await sleep(KILL_EVERY_MS);
      endedAtKill.push(tracker.ended());
      const orchestrator = loom.stack.services.find((service) => service.name === "orchestrator");
      if (orchestrator !== undefined && orchestrator.process.exitCode === null) {
        const exited = once(orchestrator.process, "exit");
        orchestrator.process.kill("SIGKILL");
        await exited;
      }
      await loom.stack.restart("orchestrator");
    }
    const endedDuringKills = tracker.ended() - (endedAtKill[0] ?? 0);
    load.stop();
    await load.done;
    const figures = await settle(loom.observer, load.accepted, tracker, ledger, 120_000);
    tracker.stop();
    const perWindow: number[] = [];
    for (let index = WINDOW_KILLS; index < endedAtKill.length; index += WINDOW_KILLS) {
      perWindow.push((endedAtKill[index] ?? 0) - (endedAtKill[index - WINDOW_KILLS] ?? 0));
    }
    console.log(
      describeFigures("orchestrator SIGKILLed every 2 s for 60 s", figures, {
        restarts: endedAtKill.length,
        endedDuringKills,
        endedPerWindow: perWindow,
      }),
    );
    expect(endedAtKill.length).toBeGreaterThanOrEqual(25);
    expect(perWindow.every((count) => count > 0)).toBe(true);
    expect({
      lost: figures.lost,
      doubled: figures.doubled,
      stuck: figures.stuck,
      failed: figures.failed,
    }).toEqual({
      lost: 0,
      doubled: 0,
      stuck: 0,
      failed: 0,
    });
  }, 300_000);
});
