import { once } from "node:events";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { Kvm } from "@nats-io/kv";
import { describe, expect, it } from "vitest";
import { TaskState } from "../../schemas/a2a.ts";
import { RunEventSchema } from "../../schemas/run.ts";
import { Buckets, Subjects } from "../../schemas/subjects.ts";
import { ServiceName } from "../../services/cli/stack.ts";
import { STEPS_PER_TRANSFER } from "../helpers/fault-load.ts";
import { createTestLedger } from "../helpers/ledger.ts";
import { startLoom, tokenFor } from "../helpers/loom.ts";
import { freePort } from "../helpers/ports.ts";

/**
 * Loom A delegates a ledger transfer to Loom B by URL, and A's orchestrator is SIGKILLed as soon as
 * B has started the remote task: A's restarted orchestrator sends the step again, and B must
 * recognise the message (its id is the same for the same attempt of the same step) instead of
 * opening a second task that would move the money twice.
 */
describe("fault - a delegate step re-sent after a crash", () => {
  it("fault - the orchestrator SIGKILLed while a remote agent works: the re-sent message opens no second remote task", async () => {
    await using ledger = await createTestLedger();
    const remotePort = await freePort();
    const remoteUrl = `http://127.0.0.1:${remotePort}`;
    const dir = await mkdtemp(join(tmpdir(), "loom-delegate-crash-"));
    await using remote = await startLoom({
      env: { LOOM_A2A_PORT: String(remotePort), LOOM_MCP_SERVERS: ledger.serversFile, LOG_LEVEL: "info" },
      tools: ["ledger.append"],
    });
    await using upstream = await startLoom({
      env: {
        LOOM_RUN_LEASE_MS: "1500",
        LOOM_A2A_DELEGATE_ALLOW: `${remoteUrl}/`,
        LOG_LEVEL: "info",
        LOOM_A2A_OUTBOUND_CREDENTIALS: JSON.stringify({
          [remoteUrl]: `Bearer ${tokenFor("loom-a", "admin")}`,
        }),
      },
    });
    try {
      const workflow = join(dir, "transfer-remotely.yaml");
      await writeFile(
        workflow,
        `id: transfer-remotely
steps:
  - id: remote
    delegate: { url: "${remoteUrl}", skill: ledger-transfer, message: { from: acct-1, to: treasury, amount: 10 } }
    timeout: 60s
output: "{% $steps.remote %}"
`,
      );
      // The moment B starts the remote task, A's orchestrator dies: B finishes it alone.
      const orchestrator = upstream.stack.services.find(
        (service) => service.name === ServiceName.ORCHESTRATOR,
      );
      if (orchestrator === undefined) throw new Error("no orchestrator in the upstream stack");
      const exited = once(orchestrator.process, "exit");
      const remoteRuns = new Set<string>();
      const watching = remote.observer.subscribe(Subjects.RUN_EVENTS_ALL, {
        callback: (_error, message) => {
          const event = RunEventSchema.safeParse(message.json());
          if (!event.success || !("statusUpdate" in event.data)) return;
          remoteRuns.add(event.data.statusUpdate.taskId);
          orchestrator.process.kill("SIGKILL");
        },
      });
      const submitted = await upstream.cli(["submit", workflow, "--json"], {
        token: tokenFor("alice", "analyst"),
      });
      expect(submitted.code).toBe(0);
      const { runId } = JSON.parse(submitted.stdout) as { runId: string };
      await exited;
      await upstream.stack.restart(ServiceName.ORCHESTRATOR);

      const runsKv = await new Kvm(upstream.observer).open(Buckets.RUNS);
      const deadline = Date.now() + 90_000;
      let state: string | undefined;
      while (Date.now() < deadline) {
        state = (await runsKv.get(runId))?.json<{ state: string }>().state;
        if (state === TaskState.COMPLETED || state === TaskState.FAILED) break;
        await sleep(250);
      }
      watching.unsubscribe();
      console.log(
        `delegate re-sent after a crash: ${JSON.stringify({ state, remoteRuns: remoteRuns.size, ledgerEntries: await ledger.entries() })}`,
      );
      // Control: the crash happened while the remote task was under way, and the run still ended.
      expect(orchestrator.process.signalCode).toBe("SIGKILL");
      expect(state).toBe(TaskState.COMPLETED);
      // One remote task, one transfer: the re-sent message followed the task it had opened.
      expect(remoteRuns.size).toBe(1);
      expect(await ledger.entries()).toBe(STEPS_PER_TRANSFER);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }, 240_000);
});
