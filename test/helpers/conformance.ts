import { execFile, spawn } from "node:child_process";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { promisify } from "node:util";
import { REPO_ROOT } from "./loom.ts";

const run = promisify(execFile);
const SUITE = join(REPO_ROOT, "node_modules/@modelcontextprotocol/conformance/dist/index.js");
const FIXTURE = join(REPO_ROOT, "services/mcp-servers/conformance.ts");

/** One scenario's verdict, by the suite's own rule: a FAILURE or WARNING check fails it. */
export interface ScenarioResult {
  passed: boolean;
  /** What went wrong, one line per failing or warning check. */
  problems: string[];
}

interface Check {
  id: string;
  status: "SUCCESS" | "FAILURE" | "WARNING" | "INFO" | "SKIPPED";
  errorMessage?: string;
}

/**
 * Runs `conformance server --url <url> --suite all` (every server scenario, pending ones too) and
 * reads each scenario's checks.json, so the caller compares scenarios, not one exit code.
 */
export async function runConformance(url: string): Promise<Map<string, ScenarioResult>> {
  const outDir = await mkdtemp(join(tmpdir(), "loom-conformance-"));
  try {
    // The suite exits 1 when any scenario fails; the verdicts are in the files either way.
    const { stdout } = await run(
      process.execPath,
      [SUITE, "server", "--url", url, "--suite", "all", "-o", outDir],
      {
        timeout: 120_000,
        maxBuffer: 16 * 1024 * 1024,
      },
    ).catch((error: { stdout?: string; code?: unknown }) => {
      if (typeof error.code !== "number") throw error;
      return { stdout: error.stdout ?? "" };
    });
    const scenarios = [...stdout.matchAll(/^=== Running scenario: (\S+) ===$/gm)].map(
      (match) => match[1] ?? "",
    );
    const dirs = await readdir(outDir);
    const results = new Map<string, ScenarioResult>();
    for (const scenario of scenarios) {
      const dir = dirs.find((name) => new RegExp(`^server-${scenario}-\\d{4}-\\d\\d-\\d\\dT`).test(name));
      if (dir === undefined) {
        results.set(scenario, { passed: false, problems: ["the suite could not run it (no checks.json)"] });
        continue;
      }
      const checks = JSON.parse(await readFile(join(outDir, dir, "checks.json"), "utf8")) as Check[];
      const problems = checks
        .filter((check) => check.status === "FAILURE" || check.status === "WARNING")
        .map((check) => `${check.id} ${check.status}: ${check.errorMessage ?? ""}`);
      results.set(scenario, { passed: problems.length === 0, problems });
    }
    return results;
  } finally {
    await rm(outDir, { recursive: true, force: true });
  }
}

/** The conformance fixture serving Streamable HTTP on its own, on a free port. */
export interface FixtureServer extends AsyncDisposable {
  url: string;
}

export async function startFixtureHttp(): Promise<FixtureServer> {
  const child = spawn(process.execPath, [FIXTURE, "--http", "0"], { stdio: ["ignore", "pipe", "inherit"] });
  const lines = createInterface({ input: child.stdout });
  const url = await new Promise<string>((resolve, reject) => {
    child.once("exit", (code) =>
      reject(new Error(`conformance fixture exited with ${code} before listening`)),
    );
    lines.once("line", (line) => {
      const found = /http:\/\/\S+/.exec(line)?.[0];
      if (found === undefined) reject(new Error(`conformance fixture said "${line}" instead of its URL`));
      else resolve(found);
    });
  });
  return {
    url,
    async [Symbol.asyncDispose]() {
      lines.close();
      if (child.exitCode !== null) return;
      const exited = new Promise((resolve) => child.once("exit", resolve));
      child.kill();
      await exited;
    },
  };
}
