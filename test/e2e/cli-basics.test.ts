import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Loom, REPO_ROOT, startLoom, tokenFor } from "../helpers/loom.ts";

const run = promisify(execFile);
const CLI = join(REPO_ROOT, "services/cli/bin.ts");
/** Nothing listens here: a command that works offline must not need it. */
const NO_NATS = "nats://127.0.0.1:1";
const alice = tokenFor("alice", "analyst");

async function offline(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [CLI, "--nats", NO_NATS, ...args], {
      timeout: 30_000,
    });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const failed = error as { code?: number; stdout?: string; stderr?: string };
    return { code: failed.code ?? -1, stdout: failed.stdout ?? "", stderr: failed.stderr ?? "" };
  }
}

/** What bash completes `line` to with the script `loom completion bash` prints. */
async function bashCompletes(script: string, line: string[]): Promise<string[]> {
  const words = line.map((word) => `'${word}'`).join(" ");
  const { stdout } = await run("bash", [
    "-c",
    `${script}\nCOMP_WORDS=(${words}); COMP_CWORD=${line.length - 1}; _loom_complete; echo "\${COMPREPLY[@]}"`,
  ]);
  return stdout.trim().split(/\s+/);
}

describe("e2e - the CLI without a running Loom", () => {
  it("e2e - loom --version prints the package's version", async () => {
    const { version } = JSON.parse(await readFile(join(REPO_ROOT, "package.json"), "utf8")) as {
      version: string;
    };
    const result = await offline(["--version"]);
    expect(result.code).toBe(0);
    expect(result.stdout.trim()).toBe(version);
  });

  it("e2e - loom completion bash completes commands and subcommands; an unknown shell is refused", async () => {
    const script = (await offline(["completion", "bash"])).stdout;
    expect(await bashCompletes(script, ["loom", "wor"])).toEqual(["workflow"]);
    expect(await bashCompletes(script, ["loom", "workflow", "s"])).toEqual(["show"]);
    expect(await bashCompletes(script, ["loom", "runs", "c"])).toEqual(["cancel"]);
    expect((await offline(["completion", "zsh"])).stdout).toContain("bashcompinit");
    expect((await offline(["completion", "fish"])).code).toBe(1);
  });

  it("e2e - an unknown command suggests the one meant", async () => {
    const result = await offline(["sumbit", "hello"]);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain("(Did you mean submit?)");
    expect((await offline(["workflow", "aply"])).stderr).toContain("(Did you mean apply?)");
  });

  it("e2e - loom workflow graph <file> draws offline, with no NATS and no services; a bad file is refused", async () => {
    const result = await offline(["workflow", "graph", "workflows/crm-enrich.yaml"]);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toMatch(/^stateDiagram-v2\n/);
    const dir = await mkdtemp(join(tmpdir(), "loom-graph-"));
    try {
      await writeFile(
        join(dir, "bad.yaml"),
        "id: bad\nsteps:\n  - { id: a, call: time.get_time, with: { x: '{% $steps.nope %}' } }\n",
      );
      const bad = await offline(["workflow", "graph", join(dir, "bad.yaml")]);
      expect(bad.code).toBe(1);
      expect(bad.stderr).toContain("$steps.nope names no step of workflow bad");
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe("e2e - workflow commands against a running Loom", () => {
  let loom: Loom;
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "loom-cli-basics-"));
    loom = await startLoom({ env: { OTEL_TRACES_EXPORTER: "none" } });
  }, 90_000);
  afterAll(async () => {
    await loom?.[Symbol.asyncDispose]();
    await rm(dir, { recursive: true, force: true });
  });

  it("e2e - loom workflow list and show name every registered workflow and print a version", async () => {
    const list = await loom.cli(["workflow", "list"]);
    expect(list.code, list.stderr).toBe(0);
    expect(list.stdout).toMatch(/^WORKFLOW\s+VERSIONS\s+STEPS\s+DESCRIPTION/);
    for (const id of ["hello", "crm-enrich", "ledger-transfer", "remember"])
      expect(list.stdout).toMatch(new RegExp(`\\n${id}\\s`));
    const show = await loom.cli(["workflow", "show", "hello", "--version", "1"]);
    expect(show.code, show.stderr).toBe(0);
    expect(show.stdout).toContain("id: hello\nversion: 1\n");
    const missing = await loom.cli(["workflow", "show", "hello", "--version", "7"]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain(
      'error UNKNOWN_WORKFLOW: workflow "hello" has no version 7 (registered versions: 1)',
    );
  });

  it("e2e - an unknown workflow id suggests the one meant, in show and in a run's error", async () => {
    const show = await loom.cli(["workflow", "show", "helo"]);
    expect(show.code).toBe(1);
    expect(show.stderr).toContain('no workflow "helo" is registered (did you mean "hello"?)');
    const submitted = await loom.cli(["submit", "helo", "--watch", "--json"], { token: alice });
    expect(submitted.code).toBe(1);
    expect(submitted.stdout).toContain('(did you mean \\"hello\\"?)');
  });

  it("e2e - loom workflow apply refuses $steps of unknown steps and warns about tools no worker offers", async () => {
    await writeFile(
      join(dir, "refs.yaml"),
      "id: refs\nsteps:\n  - { id: contact, call: crm.get_contact, with: { id: c-1 } }\n  - { id: now, call: time.get_time, with: { timezone: '{% $steps.contcat.region %}' } }\n",
    );
    const refused = await loom.cli(["workflow", "apply", join(dir, "refs.yaml")]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain(
      'error INVALID_WORKFLOW: steps[1] (now).with.timezone: $steps.contcat names no step of workflow refs (did you mean "contact"?); its steps are contact, now',
    );
    await writeFile(
      join(dir, "later.yaml"),
      "id: later\nsteps:\n  - { id: weather, call: weather.forecast }\n  - { id: now, call: time.get_time }\n",
    );
    const warned = await loom.cli(["workflow", "apply", join(dir, "later.yaml")], {
      token: tokenFor("ada", "admin"),
    });
    expect(warned.code, warned.stderr).toBe(0);
    expect(warned.stdout).toContain("later v1 registered");
    expect(warned.stderr).toContain("warning: step weather: no worker offers tool weather.forecast now");
    expect(warned.stderr).not.toContain("time.get_time");
  });
});
