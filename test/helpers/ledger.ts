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
  /** Times the tool ran per idempotency key: more than one is a step whose tool was called again. */
  callsPerKey(): Promise<Map<string, number>>;
}

/**
 * A servers.yaml with the `time` server and one more stdio server, a script of this repo run on
 * Loom's Node.js with its own environment; `extra` holds more lines of that server's entry.
 */
export function timeAndServerConfig(server: {
  name: string;
  script: string;
  env: Record<string, string>;
  governance: string;
  extra?: string[];
}): string {
  const env = Object.entries(server.env)
    .map(([name, value]) => `${name}: "${value}"`)
    .join(", ");
  return `servers:
  - name: time
    transport: { type: stdio, command: node, args: ["${join(REPO_ROOT, "services/mcp-servers/time.ts")}"] }
    governance: { owner: test, data_classification: public, access_level: read }
  - name: ${server.name}
    transport:
      type: stdio
      command: node
      args: ["${join(REPO_ROOT, server.script)}"]
      env: { ${env} }
    governance: ${server.governance}
${(server.extra ?? []).map((line) => `    ${line}\n`).join("")}`;
}

export async function createTestLedger(): Promise<TestLedger> {
  const dir = await mkdtemp(join(tmpdir(), "loom-ledger-"));
  const ledgerDir = join(dir, "ledger");
  const serversFile = join(dir, "servers.yaml");
  await writeFile(
    serversFile,
    timeAndServerConfig({
      name: "ledger",
      script: "services/mcp-servers/ledger.ts",
      env: { LEDGER_DIR: ledgerDir },
      governance: "{ owner: test, data_classification: internal, access_level: write }",
      extra: ["timeout: 10s"],
    }),
  );
  return {
    serversFile,
    entries: async () => (await readdir(join(ledgerDir, "entries")).catch(() => [])).length,
    invocations: async () => (await invocationLines(ledgerDir)).length,
    async callsPerKey() {
      const calls = new Map<string, number>();
      for (const line of await invocationLines(ledgerDir)) {
        const { key } = JSON.parse(line) as { key?: string };
        const name = key ?? "(no key)";
        calls.set(name, (calls.get(name) ?? 0) + 1);
      }
      return calls;
    },
    [Symbol.asyncDispose]: () => rm(dir, { recursive: true, force: true }),
  };
}

async function invocationLines(ledgerDir: string): Promise<string[]> {
  const text = await readFile(join(ledgerDir, "invocations.log"), "utf8").catch(() => "");
  return text.split("\n").filter(Boolean);
}
