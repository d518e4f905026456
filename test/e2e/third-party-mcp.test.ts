import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Loom, REPO_ROOT, startLoom, tokenFor } from "../helpers/loom.ts";

const EVERYTHING = join(REPO_ROOT, "node_modules/@modelcontextprotocol/server-everything/dist/index.js");

/** Loom configured with a server no one here wrote, and one entry refused for lacking governance. */
const SERVERS = `
servers:
  - name: everything
    transport: { type: stdio, command: node, args: ["${EVERYTHING}", stdio] }
    timeout: 10s
    governance: { owner: mcp-reference, data_classification: public, access_level: read }
  - name: ungoverned
    transport: { type: stdio, command: node, args: ["${EVERYTHING}", stdio] }
`;

const POLICY = `
version: "test"
rules:
  - { name: testers-start, effect: allow, roles: [tester], actions: [workflow.start], workflows: ["*"] }
  - { name: starters-follow-their-runs, effect: allow, roles: ["*"], actions: [runs.read, runs.subscribe], workflows: ["*"], when: "principal.id == resource.started_by || 'admin' in principal.roles" }
  - { name: testers-use-everything, effect: allow, roles: [tester], actions: [tools.call], tools: ["everything.*"] }
`;

const WORKFLOW = `
id: everything-demo
steps:
  - id: say
    call: everything.echo
    with: { message: "{% 'hello ' & $input.name %}" }
  - id: add
    call: everything.get-sum
    with: { a: "{% $input.a %}", b: 5 }
output: "{% { 'echo': $steps.say, 'sum': $steps.add } %}"
`;

describe("e2e - a third-party MCP server (server-everything over stdio)", () => {
  let loom: Loom;
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "loom-everything-"));
    await writeFile(join(dir, "servers.yaml"), SERVERS);
    await mkdir(join(dir, "policies"));
    await writeFile(join(dir, "policies", "test.yaml"), POLICY);
    await writeFile(join(dir, "everything-demo.yaml"), WORKFLOW);
    loom = await startLoom({
      env: { LOOM_MCP_SERVERS: join(dir, "servers.yaml"), LOOM_POLICY_DIR: join(dir, "policies") },
      tools: ["everything.echo", "everything.get-sum"],
    });
  });
  afterAll(async () => {
    await loom?.[Symbol.asyncDispose]();
    await rm(dir, { recursive: true, force: true });
  });

  it("mcp - echo and get-sum run through a workflow sent inline", async () => {
    const { code, stdout, stderr } = await loom.cli(
      ["submit", join(dir, "everything-demo.yaml"), "--input", '{"name":"loom","a":37}', "--watch", "--json"],
      { token: tokenFor("tess", "tester") },
    );
    expect(stderr).toBe("");
    const summary = JSON.parse(stdout);
    expect(summary.state).toBe("completed");
    expect(code).toBe(0);
    expect(summary.output.echo).toBe("Echo: hello loom");
    expect(summary.output.sum).toMatch(/\b42\b/);
  });

  it("mcp - a server without governance metadata is refused and its tools never registered", async () => {
    const { stdout } = await loom.cli(["tools", "list", "--json"]);
    const servers = new Set(JSON.parse(stdout).map((tool: { server: string }) => tool.server));
    expect(servers).toEqual(new Set(["everything"]));
    const workerLog = await readFile(join(loom.logDir, "mcp-worker.log"), "utf8");
    expect(workerLog).toMatch(/MCP server \\"ungoverned\\" refused: governance metadata is required/);
  });

  it("mcp - arguments that break the tool's inputSchema fail with INVALID_INPUT before the call", async () => {
    const { code, stdout } = await loom.cli(
      [
        "submit",
        join(dir, "everything-demo.yaml"),
        "--input",
        '{"name":"loom","a":"not a number"}',
        "--watch",
        "--json",
      ],
      { token: tokenFor("tess", "tester") },
    );
    expect(code).toBe(1);
    const summary = JSON.parse(stdout);
    expect(summary.error.code).toBe("INVALID_INPUT");
    expect(summary.error.message).toContain("everything.get-sum");
  });
});
