import { copyFile, mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { jetstream } from "@nats-io/jetstream";
import { shortStateName, type TaskState, TERMINAL_STATES } from "../../schemas/a2a.ts";
import { followRun } from "../../services/kit/run-watch.ts";
import { createTestLedger, type TestLedger } from "./ledger.ts";
import { type Loom, REPO_ROOT, startLoom } from "./loom.ts";
import { freePort } from "./ports.ts";

/** Analysts may write to the ledger; the rest is the shipped policy. */
const LEDGER_POLICY = `
version: "ledger-runs"
rules:
  - { name: analysts-use-the-ledger, effect: allow, roles: [analyst], actions: [tools.call], tools: ["ledger.*"] }
`;

/**
 * Workflow files with side effects in the ledger: `pay` debits, waits for an approval, credits;
 * `pay-bad` debits, then fails on arguments it cannot render; `count` only reads.
 */
const WORKFLOWS = {
  pay: `
id: pay
steps:
  - id: debit
    call: ledger.append
    with: { account: a, amount: -5, memo: debit }
  - id: approve
    approval: { prompt: "Pay {% $input.to %} 5?", roles: [manager, admin] }
  - id: credit
    call: ledger.append
    with: { account: "{% $input.to %}", amount: 5, memo: credit }
output: "{% { 'debit': $steps.debit.entryId, 'credit': $steps.credit.entryId } %}"
`,
  "pay-bad": `
id: pay-bad
steps:
  - id: debit
    call: ledger.append
    with: { account: a, amount: -5, memo: debit }
  - id: credit
    call: ledger.append
    with: { account: b, amount: "{% $input.note + 1 %}", memo: credit }
`,
  count: `
id: count
steps:
  - id: entries
    call: ledger.count
`,
} as const;

/** A Loom whose worker serves `time` and a test ledger, with the workflows above as files. */
export interface LedgerRuns extends AsyncDisposable {
  loom: Loom;
  ledger: TestLedger;
  /** The orchestrator's A2A edge (`/a2a/rest/tasks/<id>` and so on). */
  a2aUrl: string;
  /** The path of one of the workflow files, for `loom submit <file>`. */
  workflow(name: keyof typeof WORKFLOWS): string;
  /** Resolves once run `runId` announces `state` (or ends), with the state it reached. */
  reaches(runId: string, state: TaskState, timeoutMs?: number): Promise<string>;
}

export async function startLedgerRuns(): Promise<LedgerRuns> {
  const dir = await mkdtemp(join(tmpdir(), "loom-ledger-runs-"));
  const ledger = await createTestLedger();
  await mkdir(join(dir, "policies"));
  await copyFile(join(REPO_ROOT, "infra/policies/default.yaml"), join(dir, "policies/default.yaml"));
  await writeFile(join(dir, "policies/ledger.yaml"), LEDGER_POLICY);
  for (const [name, text] of Object.entries(WORKFLOWS)) await writeFile(join(dir, `${name}.yaml`), text);
  const port = await freePort();
  const loom = await startLoom({
    env: {
      LOOM_MCP_SERVERS: ledger.serversFile,
      LOOM_POLICY_DIR: join(dir, "policies"),
      LOOM_A2A_PORT: String(port),
    },
    tools: ["time.get_time", "ledger.append", "ledger.count"],
    readyTimeoutMs: 60_000,
  });
  return {
    loom,
    ledger,
    a2aUrl: `http://127.0.0.1:${port}`,
    workflow: (name) => join(dir, `${name}.yaml`),
    async reaches(runId, state, timeoutMs = 30_000) {
      const events = followRun(jetstream(loom.observer), runId, {
        stopAt: (seen) => seen === state || TERMINAL_STATES.has(seen),
      });
      const timeout = new Promise<never>((_, reject) =>
        setTimeout(
          () => reject(new Error(`run ${runId} did not reach ${shortStateName(state)}`)),
          timeoutMs,
        ).unref(),
      );
      const last = (async () => {
        let reached = "";
        for await (const event of events) {
          if ("statusUpdate" in event) reached = shortStateName(event.statusUpdate.status.state);
        }
        return reached;
      })();
      return Promise.race([last, timeout]);
    },
    async [Symbol.asyncDispose]() {
      await loom[Symbol.asyncDispose]();
      await ledger[Symbol.asyncDispose]();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
