import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type ToolStats, ToolStatsSchema } from "../../schemas/tool-calls.ts";
import { timeAndServerConfig } from "../helpers/ledger.ts";
import { type Loom, REPO_ROOT, startLoom, tokenFor } from "../helpers/loom.ts";

const alice = tokenFor("alice", "analyst");
const sam = tokenFor("sam", "analyst");
const vic = tokenFor("vic", "viewer");
const bob = tokenFor("bob", "contractor");
const root = tokenFor("root", "admin");

/** Reads of `gauges` are cached; viewers get them with the owner's email masked; contractors get nothing. */
const GAUGES_POLICY = `version: "gauges-1"
rules:
  - name: analysts-read-gauges
    effect: allow
    roles: [analyst]
    actions: [tools.call, resources.read]
    tools: ["gauges.*"]
  - name: viewers-read-gauges-masked
    effect: allow
    roles: [viewer]
    actions: [tools.call, resources.read]
    tools: ["gauges.*"]
    obligations: { mask: { fields: [owner_email] } }
`;

const WORKFLOW = `id: gauge-check
version: 1
input: { type: object, required: [gaugeId], properties: { gaugeId: { type: string } } }
steps:
  - id: gauge
    call: gauges.read_gauge
    with: { id: "{% $input.gaugeId %}" }
  - id: sheet
    read: "mcp://gauges/sheets/{% $input.gaugeId %}"
output: "{% { 'value': $steps.gauge.value, 'owner': $steps.gauge.owner_email, 'sheetOwner': $steps.sheet.owner_email } %}"
`;

describe("e2e - call records, feedback, tools stats and the read cache", () => {
  let loom: Loom;
  let dir: string;
  let countFile: string;
  let workflowFile: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "loom-stats-"));
    countFile = join(dir, "invocations.log");
    await writeFile(countFile, "");
    const policies = join(dir, "policies");
    await mkdir(policies);
    await copyFile(join(REPO_ROOT, "infra/policies/default.yaml"), join(policies, "default.yaml"));
    await writeFile(join(policies, "gauges.yaml"), GAUGES_POLICY);
    workflowFile = join(dir, "gauge-check.yaml");
    await writeFile(workflowFile, WORKFLOW);
    const serversFile = join(dir, "servers.yaml");
    await writeFile(
      serversFile,
      timeAndServerConfig({
        name: "gauges",
        script: "test/helpers/counting-mcp-server.ts",
        env: { COUNT_FILE: countFile },
        governance: "{ owner: test, data_classification: internal, access_level: read }",
        extra: ["cache: { ttl: 5m, tools: [read_gauge], resources: true }"],
      }),
    );
    loom = await startLoom({
      env: { LOOM_MCP_SERVERS: serversFile, LOOM_POLICY_DIR: policies },
      tools: ["time.get_time", "gauges.read_gauge"],
    });
  });
  afterAll(async () => {
    await loom?.[Symbol.asyncDispose]();
    await rm(dir, { recursive: true, force: true });
  });

  const invocations = async () => (await readFile(countFile, "utf8")).split("\n").filter(Boolean);

  async function checkGauge(token: string) {
    const result = await loom.cli(
      ["submit", workflowFile, "--input", '{"gaugeId":"g-1"}', "--watch", "--json"],
      { token },
    );
    return { ...result, summary: JSON.parse(result.stdout.trim().split("\n").at(-1) ?? "{}") };
  }

  async function stats(): Promise<ToolStats> {
    const result = await loom.cli(["tools", "stats", "--since", "1h", "--json"], { token: alice });
    expect(result.code, result.stderr).toBe(0);
    return ToolStatsSchema.parse(JSON.parse(result.stdout));
  }

  let firstRun: string;
  let secondRun: string;

  it("cache - the second run's reads come from the cache: the server is not called again", async () => {
    const first = await checkGauge(alice);
    expect(first.code, first.stderr).toBe(0);
    expect(first.summary.output).toEqual({
      value: 42.5,
      owner: "ops@example.com",
      sheetOwner: "ops@example.com",
    });
    expect(await invocations()).toEqual(["tool read_gauge g-1", "resource gauges://sheets/g-1"]);
    firstRun = first.summary.runId;

    const second = await checkGauge(alice);
    expect(second.code, second.stderr).toBe(0);
    expect(second.summary.output).toEqual(first.summary.output);
    expect(await invocations()).toHaveLength(2);
    secondRun = second.summary.runId;
  });

  it("cache - a cached answer is still audited as an execution of that run, and says so", async () => {
    const executionsOf = async (runId: string) => {
      const tail = await loom.cli(["audit", "tail", "--run", runId, "--json", "-n", "50"]);
      expect(tail.code, tail.stderr).toBe(0);
      const records = tail.stdout
        .trim()
        .split("\n")
        .map((line) => JSON.parse(line));
      return {
        records,
        executions: records
          .filter((record) => record.kind === "tool.execution")
          .map((record) => [
            record.principal,
            record.action,
            record.resource,
            record.outcome,
            record.stepId,
            record.serverVersion,
            record.cached,
          ]),
      };
    };
    const { records, executions } = await executionsOf(secondRun);
    expect(executions).toEqual([
      ["alice", "tools.call", "gauges.read_gauge", "ok", "gauge", "2.1.0", true],
      ["alice", "resources.read", "gauges.gauges://sheets/g-1", "ok", "sheet", "2.1.0", true],
    ]);
    expect((await executionsOf(firstRun)).executions).toEqual([
      ["alice", "tools.call", "gauges.read_gauge", "ok", "gauge", "2.1.0", false],
      ["alice", "resources.read", "gauges.gauges://sheets/g-1", "ok", "sheet", "2.1.0", false],
    ]);
    const decisions = records.filter(
      (record) => record.kind === "policy.decision" && record.effect === "allow",
    );
    expect(decisions.map((record) => record.rule)).toContain("analysts-read-gauges");
  });

  it("cache - masking applies per caller after the cache: a viewer gets the cached answer masked", async () => {
    const viewer = await checkGauge(vic);
    expect(viewer.code, viewer.stderr).toBe(0);
    expect(viewer.summary.output).toEqual({ value: 42.5, owner: "[masked]", sheetOwner: "[masked]" });
    expect(await invocations()).toHaveLength(2);
    // The viewer's masked copy did not replace the cached original.
    const again = await checkGauge(alice);
    expect(again.summary.output.owner).toBe("ops@example.com");
  });

  it("cache - a role the policy refuses is denied even though the answer is cached", async () => {
    const refused = await checkGauge(bob);
    expect(refused.code).toBe(2);
    expect(refused.summary.state).toBe("rejected");
    expect(refused.summary.error.code).toBe("POLICY_DENIED");
    expect(await invocations()).toHaveLength(2);
  });

  it("stats - loom tools stats shows calls, latency, cached share and the server's version", async () => {
    const rows = (await stats()).rows;
    const tool = rows.find((row) => row.server === "gauges" && row.target === "read_gauge");
    // alice twice, vic, alice again: one call reached the server, three were cached.
    expect(tool).toMatchObject({
      kind: "tool",
      serverVersion: "2.1.0",
      calls: 4,
      errors: 0,
      errorRate: 0,
      cached: 3,
      cachedShare: 0.75,
      feedback: { ok: 0, bad: 0 },
    });
    expect(tool?.latencyMs?.p50).toBeGreaterThan(0);
    expect(tool?.latencyMs?.p99).toBeGreaterThanOrEqual(tool?.latencyMs?.p50 ?? Number.POSITIVE_INFINITY);
    const sheet = rows.find((row) => row.target === "gauges://sheets/g-1");
    expect(sheet).toMatchObject({ kind: "resource", serverVersion: "2.1.0", calls: 4, cached: 3 });

    const text = await loom.cli(["tools", "stats"], { token: alice });
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(
      /^TOOL\s+KIND\s+VERSION\s+CALLS\s+ERRORS\s+P50 MS\s+P95 MS\s+P99 MS\s+CACHED\s+OK\s+BAD/,
    );
    expect(text.stdout).toMatch(
      /gauges\.read_gauge\s+tool\s+2\.1\.0\s+4\s+0\.0%\s+[\d.]+\s+[\d.]+\s+[\d.]+\s+75\.0%\s+0\s+0/,
    );
  });

  it("stats - a tool error counts in the error rate and is never cached", async () => {
    for (let attempt = 0; attempt < 2; attempt++) {
      const broken = await loom.cli(
        ["submit", workflowFile, "--input", '{"gaugeId":"broken"}', "--watch", "--json"],
        { token: alice },
      );
      expect(broken.code).toBe(1);
    }
    expect((await invocations()).filter((line) => line === "tool read_gauge broken")).toHaveLength(2);
    const tool = (await stats()).rows.find((row) => row.target === "read_gauge");
    expect(tool).toMatchObject({ calls: 6, errors: 2, cached: 3 });
    expect(tool?.errorRate).toBeCloseTo(2 / 6);
  });

  it("feedback - ok and bad verdicts on steps show up in loom tools stats", async () => {
    const ok = await loom.cli(["feedback", firstRun, "gauge", "--ok"], { token: alice });
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stdout).toContain(`feedback ok on ${firstRun}/gauge: gauges.read_gauge (version 2.1.0)`);
    const bad = await loom.cli(
      ["feedback", secondRun, "gauge", "--bad", "--comment", "reading looks stale", "--json"],
      { token: alice },
    );
    expect(bad.code, bad.stderr).toBe(0);
    expect(JSON.parse(bad.stdout)).toMatchObject({
      runId: secondRun,
      stepId: "gauge",
      server: "gauges",
      target: "read_gauge",
      serverVersion: "2.1.0",
      verdict: "bad",
      comment: "reading looks stale",
      by: "alice",
    });
    const admin = await loom.cli(["feedback", firstRun, "sheet", "--bad"], { token: root });
    expect(admin.code, admin.stderr).toBe(0);

    const rows = (await stats()).rows;
    expect(rows.find((row) => row.target === "read_gauge")?.feedback).toEqual({ ok: 1, bad: 1 });
    expect(rows.find((row) => row.target === "gauges://sheets/g-1")?.feedback).toEqual({ ok: 0, bad: 1 });
  });

  it("feedback - someone who did not start the run is refused as if it did not exist (exit 1)", async () => {
    const refused = await loom.cli(["feedback", firstRun, "gauge", "--bad"], { token: sam });
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain(`error RUN_NOT_FOUND: no run with id ${firstRun}`);
    const noToken = await loom.cli(["feedback", firstRun, "gauge", "--bad"]);
    expect(noToken.code).toBe(2);
    expect((await stats()).rows.find((row) => row.target === "read_gauge")?.feedback).toEqual({
      ok: 1,
      bad: 1,
    });
  });

  it("feedback - an unknown run or a step that called no tool is a typed error", async () => {
    const unknownRun = await loom.cli(["feedback", "no-such-run", "gauge", "--ok"], { token: alice });
    expect(unknownRun.code).toBe(1);
    expect(unknownRun.stderr).toContain("error RUN_NOT_FOUND: no run with id no-such-run");
    const unknownStep = await loom.cli(["feedback", firstRun, "nope", "--ok"], { token: alice });
    expect(unknownStep.code).toBe(1);
    expect(unknownStep.stderr).toContain(
      `error STEP_NOT_FOUND: run ${firstRun} has no step nope that called a tool; steps that did: gauge, sheet`,
    );
    const neither = await loom.cli(["feedback", firstRun, "gauge"], { token: alice });
    expect(neither.code).toBe(1);
    expect(neither.stderr).toContain("say --ok or --bad");
  });
});
