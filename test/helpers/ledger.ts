import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { REPO_ROOT } from "./loom.ts";

/** A ledger server config in a temp dir, so a test counts only its own side effects. */
export interface TestLedger extends AsyncDisposable {
  /** `LOOM_MCP_SERVERS` for a stack whose worker serves `time` and this `ledger`. */
  serversFile: string;
  /** Distinct entries written: the side effects that happened. */
  entries(): Promise<number>;
  /** Times the tool ran, duplicates (refused by the idempotency key) included. */
  invocations(): Promise<number>;
}

export async function createTestLedger(): Promise<TestLedger> {
  const dir = await mkdtemp(join(tmpdir(), "loom-ledger-"));
  const ledgerDir = join(dir, "ledger");
  const serversFile = join(dir, "servers.yaml");
  await writeFile(
    serversFile,
    `servers:
  - name: time
    transport: { type: stdio, command: node, args: ["${join(REPO_ROOT, "services/mcp-servers/time.ts")}"] }
    governance: { owner: test, data_classification: public, access_level: read }
  - name: ledger
    transport:
      type: stdio
      command: node
      args: ["${join(REPO_ROOT, "services/mcp-servers/ledger.ts")}"]
      env: { LEDGER_DIR: "${ledgerDir}" }
    timeout: 10s
    governance: { owner: test, data_classification: internal, access_level: write }
`,
  );
  return {
    serversFile,
    entries: async () => (await readdir(join(ledgerDir, "entries")).catch(() => [])).length,
    invocations: async () =>
      (await readFile(join(ledgerDir, "invocations.log"), "utf8").catch(() => "")).split("\n").filter(Boolean)
        .length,
    [Symbol.asyncDispose]: () => rm(dir, { recursive: true, force: true }),
  };
}
