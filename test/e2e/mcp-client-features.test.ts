import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subscription } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type TaskNotification, TaskNotificationSchema } from "../../schemas/mcp.ts";
import { parsePayload } from "../../services/kit/index.ts";
import { type Loom, REPO_ROOT, startLoom, tokenFor } from "../helpers/loom.ts";

const EVERYTHING = join(REPO_ROOT, "node_modules/@modelcontextprotocol/server-everything/dist/index.js");
const FIXTURE = join(REPO_ROOT, "test/helpers/mcp-fixture-stdio.ts");

const SERVERS = `
servers:
  - name: everything
    transport: { type: stdio, command: node, args: ["${EVERYTHING}", stdio] }
    timeout: 15s
    governance: { owner: mcp-reference, data_classification: public, access_level: read }
  - name: fixture
    transport: { type: stdio, command: node, args: ["${FIXTURE}"] }
    timeout: 10s
    governance: { owner: tests, data_classification: internal, access_level: write }
`;

const POLICY = `
version: "test"
rules:
  - { name: testers-start, effect: allow, roles: [tester], actions: [workflow.start], workflows: ["*"] }
  - { name: starters-follow-their-runs, effect: allow, roles: ["*"], actions: [runs.read, runs.subscribe], workflows: ["*"], when: "principal.id == resource.started_by || 'admin' in principal.roles" }
  - { name: testers-call, effect: allow, roles: [tester], actions: [tools.call], tools: ["everything.*", "fixture.*"] }
`;

/** A one-step workflow calling `call` with `with`. */
function oneStep(id: string, stepId: string, call: string, args: Record<string, unknown>): string {
  return `id: ${id}\nsteps:\n  - id: ${stepId}\n    call: ${call}\n    with: ${JSON.stringify(args)}\n`;
}

describe("e2e - the MCP worker as a full client (progress, logging, output schemas, list_changed)", () => {
  let loom: Loom;
  let dir: string;
  const token = tokenFor("tess", "tester");
  const workflow = async (name: string, body: string) => {
    const file = join(dir, `${name}.yaml`);
    await writeFile(file, body);
    return file;
  };

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "loom-mcp-client-"));
    await writeFile(join(dir, "servers.yaml"), SERVERS);
    await mkdir(join(dir, "policies"));
    await writeFile(join(dir, "policies", "test.yaml"), POLICY);
    loom = await startLoom({
      env: { LOOM_MCP_SERVERS: join(dir, "servers.yaml"), LOOM_POLICY_DIR: join(dir, "policies") },
      tools: ["everything.trigger-long-running-operation", "fixture.echo"],
    });
  });
  afterAll(async () => {
    await loom?.[Symbol.asyncDispose]();
    await rm(dir, { recursive: true, force: true });
  });

  it("mcp progress - server-everything's long-running operation draws a progress bar in loom submit --watch", async () => {
    const file = await workflow(
      "long",
      oneStep("long-op", "slow", "everything.trigger-long-running-operation", { duration: 1, steps: 4 }),
    );
    const { code, stdout } = await loom.cli(["submit", file, "--watch"], { token });
    expect(code).toBe(0);
    const bars = stdout.split("\n").filter((line) => line.includes("] "));
    expect(bars).toHaveLength(4);
    expect(bars[0]).toMatch(/working\s+\[###-------\]\s+25% step slow$/);
    expect(bars[1]).toMatch(/\[#####-----\]\s+50% step slow$/);
    expect(bars[3]).toMatch(/\[##########\] 100% step slow$/);
    expect(stdout).toContain("completed");
  });

  it("mcp progress - --json lists the reports, and the worker publishes progress and log notifications of the task", async () => {
    const heard: TaskNotification[] = [];
    const subscription: Subscription = loom.observer.subscribe("loom.v1.tasks.*.notifications", {
      callback: (_error, message) => {
        heard.push(parsePayload(TaskNotificationSchema, message.data, "task notification"));
      },
    });
    const file = await workflow("chatty", oneStep("chatty", "work", "fixture.slow_progress", { steps: 3 }));
    const { code, stdout } = await loom.cli(["submit", file, "--watch", "--json"], { token });
    subscription.unsubscribe();
    expect(code).toBe(0);
    const summary = JSON.parse(stdout);
    expect(summary.progress).toEqual([
      { stepId: "work", progress: 1, total: 3, message: "step 1 of 3" },
      { stepId: "work", progress: 2, total: 3, message: "step 2 of 3" },
      { stepId: "work", progress: 3, total: 3, message: "step 3 of 3" },
    ]);
    const ofRun = heard.filter((notification) => notification.runId === summary.runId);
    expect(ofRun.map((notification) => notification.kind)).toEqual([
      "log",
      "progress",
      "progress",
      "progress",
    ]);
    expect(ofRun[0]).toMatchObject({ kind: "log", level: "info", logger: "fixture", stepId: "work" });
    // The worker's own log line for the server's message carries the run's trace id.
    const workerLog = await readFile(join(loom.logDir, "mcp-worker.log"), "utf8");
    const line = workerLog
      .split("\n")
      .find((entry) => entry.includes('"MCP server log"') && entry.includes(summary.runId));
    expect(line).toBeDefined();
    expect(JSON.parse(line ?? "{}")).toMatchObject({
      trace_id: summary.traceId,
      mcp_logger: "fixture",
      data: "working in 3 steps",
    });
  });

  it("mcp output - structuredContent that breaks the outputSchema, or is missing, fails with TOOL_OUTPUT_INVALID", async () => {
    for (const [tool, words] of [
      ["structured_wrong", "does not match its schema"],
      ["structured_missing", "returned no structuredContent"],
    ] as const) {
      const file = await workflow(tool, oneStep(tool.replace("_", "-"), "out", `fixture.${tool}`, {}));
      const { code, stdout } = await loom.cli(["submit", file, "--watch", "--json"], { token });
      expect(code).toBe(1);
      const summary = JSON.parse(stdout);
      expect(summary.error.code).toBe("TOOL_OUTPUT_INVALID");
      expect(summary.error.message).toContain(`fixture.${tool}`);
      expect(summary.error.message).toContain(words);
    }
    const ok = await workflow("ok", oneStep("structured-ok", "out", "fixture.structured_ok", {}));
    const { code, stdout } = await loom.cli(["submit", ok, "--watch", "--json"], { token });
    expect(code).toBe(0);
    expect(JSON.parse(stdout).state).toBe("completed");
  });

  it("mcp list_changed - a tool the server adds shows in loom tools list without a restart, and goes when removed", async () => {
    const listed = async () => {
      const { stdout } = await loom.cli(["tools", "list", "--json"]);
      return JSON.parse(stdout).map(
        (tool: { server: string; name: string }) => `${tool.server}.${tool.name}`,
      );
    };
    expect(await listed()).not.toContain("fixture.fresh");
    const add = await workflow("add", oneStep("add-tool", "add", "fixture.add_tool", { name: "fresh" }));
    expect((await loom.cli(["submit", add, "--watch", "--json"], { token })).code).toBe(0);
    await expect.poll(listed, { timeout: 10_000, interval: 300 }).toContain("fixture.fresh");

    const remove = await workflow(
      "remove",
      oneStep("remove-tool", "remove", "fixture.remove_tool", { name: "fresh" }),
    );
    expect((await loom.cli(["submit", remove, "--watch", "--json"], { token })).code).toBe(0);
    await expect.poll(listed, { timeout: 10_000, interval: 300 }).not.toContain("fixture.fresh");
    expect(await listed()).toContain("fixture.echo");
  });
});
