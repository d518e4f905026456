import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Loom, REPO_ROOT, startLoom, tokenFor } from "../helpers/loom.ts";

const FIXTURE = join(REPO_ROOT, "test/fixtures/resilience-server.ts");

const POLICY = `
version: "test"
rules:
  - { name: testers-start, effect: allow, roles: [tester], actions: [workflow.start], workflows: ["*"] }
  - { name: starters-follow-their-runs, effect: allow, roles: ["*"], actions: [runs.read, runs.subscribe], workflows: ["*"], when: "principal.id == resource.started_by || 'admin' in principal.roles" }
  - { name: testers-use-fixture, effect: allow, roles: [tester], actions: [tools.call], tools: ["fixture.*"] }
`;

/** Six calls at once, so both versions and both v1 replicas get some. */
const WORKFLOW = `
id: fan-out
steps:
  - id: all
    parallel:
${[1, 2, 3, 4, 5, 6].map((index) => `      - { id: who${index}, call: fixture.whoami }`).join("\n")}
output: "{% $steps.all %}"
`;

describe("e2e - MCP servers with replicas and versions behind the whole stack", () => {
  let loom: Loom;
  let dir: string;
  let metricsPort: number;
  const saved = { ...process.env };

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "loom-servers-"));
    const fixture = (version: string) =>
      `{ type: stdio, command: node, args: ["${FIXTURE}"], env: { FIXTURE_STATE_DIR: "${dir}", FIXTURE_VERSION: ${version} } }`;
    await writeFile(
      join(dir, "servers.yaml"),
      `
servers:
  - name: fixture
    transport: ${fixture("v1")}
    replicas: 2
    versions:
      - { name: v1, weight: 50 }
      - { name: v2, weight: 50, replicas: 1, transport: ${fixture("v2")} }
    governance: { owner: qa, data_classification: internal, access_level: read }
`,
    );
    await mkdir(join(dir, "policies"));
    await writeFile(join(dir, "policies", "test.yaml"), POLICY);
    await writeFile(join(dir, "fan-out.yaml"), WORKFLOW);
    process.env.LOOM_HTTP_PORT = "0";
    loom = await startLoom({
      env: { LOOM_MCP_SERVERS: join(dir, "servers.yaml"), LOOM_POLICY_DIR: join(dir, "policies") },
      tools: ["fixture.whoami"],
    });
    const workerLog = await readFile(join(loom.logDir, "mcp-worker.log"), "utf8");
    const line = workerLog.split("\n").find((text) => text.includes("serving metrics and health"));
    metricsPort = JSON.parse(line ?? "{}").port;
  });
  afterAll(async () => {
    await loom?.[Symbol.asyncDispose]();
    await rm(dir, { recursive: true, force: true });
    process.env = saved;
  });

  it("servers - `loom servers list` shows the server up with its replicas, versions and governance", async () => {
    let stdout = "";
    for (let tries = 0; tries < 50 && !/^fixture\s+up\s+3\/3/m.test(stdout); tries++) {
      if (tries > 0) await new Promise((resolve) => setTimeout(resolve, 200));
      stdout = (await loom.cli(["servers", "list"])).stdout;
    }
    expect(stdout).toMatch(/^SERVER\s+HEALTH\s+REPLICAS\s+VERSIONS/m);
    expect(stdout).toMatch(/^fixture\s+up\s+3\/3\s+v1:50 v2:50\s+0\s+internal\s+read\s+qa\s+stdio /m);
    expect(stdout).not.toContain("FIXTURE_STATE_DIR");

    const tools = await loom.cli(["tools", "list"]);
    expect(tools.stdout).toMatch(/^TOOL\s+CLASSIFICATION\s+ACCESS\s+OWNER\s+HEALTH/m);
    expect(tools.stdout).toMatch(/^fixture\.whoami\s+internal\s+read\s+qa\s+up\s/m);
  });

  it("servers - calls through a workflow spread over versions and processes, counted per server_version", async () => {
    const { code, stdout } = await loom.cli(["submit", join(dir, "fan-out.yaml"), "--watch", "--json"], {
      token: tokenFor("tess", "tester"),
    });
    const summary = JSON.parse(stdout);
    expect(summary.state).toBe("completed");
    expect(code).toBe(0);
    const answers = Object.values(summary.output as Record<string, { pid: number; version: string }>);
    expect(answers).toHaveLength(6);
    // Six calls at once do not all wait for one process: the replicas share them.
    expect(new Set(answers.map((answer) => answer.pid)).size).toBeGreaterThan(1);

    const metrics = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    const counted = [
      ...metrics.matchAll(
        /^loom_tool_calls_total\{server="fixture",tool="whoami",outcome="ok",server_version="(v1|v2)"\} (\d+)/gm,
      ),
    ].map(([, version, count]) => ({ version, count: Number(count) }));
    expect(counted.reduce((sum, each) => sum + each.count, 0)).toBe(6);
    // Each answer names the version that served it; the metrics count the same split.
    for (const { version, count } of counted) {
      expect(answers.filter((answer) => answer.version === version)).toHaveLength(count);
    }
  });
});
