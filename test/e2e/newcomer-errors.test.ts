import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { waitUntilReady } from "../../services/cli/stack.ts";
import { type CliResult, type Loom, REPO_ROOT, startLoom, tokenFor } from "../helpers/loom.ts";
import { startNatsServer } from "../helpers/nats-server.ts";
import { NatsUser } from "../helpers/nats-users.ts";
import { freePort } from "../helpers/ports.ts";

const alice = tokenFor("alice", "analyst");
const bob = tokenFor("bob", "analyst");
const admin = tokenFor("ann", "admin");

const server = (name: string, file: string, governance: string) => `
  - name: ${name}
    transport: { type: stdio, command: node, args: ["${join(REPO_ROOT, "services/mcp-servers", file)}"] }
    timeout: 10s
    governance: ${governance}`;
const TIME = server(
  "time",
  "time.ts",
  "{ owner: platform-team, data_classification: public, access_level: read }",
);
const CRM = server(
  "crm",
  "crm.ts",
  "{ owner: sales-ops, data_classification: restricted, access_level: write, region: eu }",
);
/** A second copy of the time server, taken out of the config later on. */
const EXTRA = server(
  "extra",
  "time.ts",
  "{ owner: platform-team, data_classification: public, access_level: read }",
);

const TYPO = `id: typo
steps:
  - id: now
    call: time.get_time
    args: { timezone: UTC }
`;
const UNKNOWN_SERVER = `id: clock
steps:
  - id: now
    call: clock.get_time
`;
const UNKNOWN_TOOL = `id: weather
steps:
  - id: now
    call: time.get_weather
`;
const WAITS = `id: waits
steps:
  - id: go
    approval: { prompt: "Go on?", roles: [manager] }
`;

function json(result: CliResult): Record<string, unknown> {
  expect(result.stdout, result.stderr).not.toBe("");
  return JSON.parse(result.stdout.trim().split("\n").at(-1) ?? "") as Record<string, unknown>;
}

async function gatewayTools(url: URL): Promise<string[]> {
  const client = new Client({ name: "newcomer-test", version: "1.0.0" });
  await client.connect(
    new StreamableHTTPClientTransport(url, {
      requestInit: { headers: { Authorization: `Bearer ${admin}` } },
    }),
  );
  try {
    return (await client.listTools()).tools.map((tool) => tool.name);
  } finally {
    await client.close();
  }
}

describe("e2e - a newcomer's mistakes get errors that say what is wrong and where", () => {
  let loom: Loom;
  let dir: string;
  let serversFile: string;
  let mcpUrl: URL;
  const file = (name: string) => join(dir, name);

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "loom-newcomer-"));
    const workflows = file("workflows");
    await mkdir(workflows);
    await copyFile(join(REPO_ROOT, "workflows/hello.yaml"), join(workflows, "hello.yaml"));
    await writeFile(join(workflows, "broken.yaml"), TYPO.replace("id: typo", "id: broken"));
    serversFile = file("servers.yaml");
    await writeFile(serversFile, `servers:${TIME}${CRM}${EXTRA}\n`);
    for (const [name, text] of Object.entries({ TYPO, UNKNOWN_SERVER, UNKNOWN_TOOL, WAITS })) {
      await writeFile(file(`${name.toLowerCase()}.yaml`), text);
    }
    const port = await freePort();
    mcpUrl = new URL(`http://127.0.0.1:${port}/mcp`);
    loom = await startLoom({
      env: {
        LOOM_WORKFLOWS_DIR: workflows,
        LOOM_MCP_SERVERS: serversFile,
        LOOM_A2A_PORT: String(port),
        OTEL_TRACES_EXPORTER: "none",
      },
      tools: ["time.get_time", "crm.get_contact", "extra.get_time"],
    });
  }, 90_000);

  afterAll(async () => {
    await loom?.[Symbol.asyncDispose]();
    await rm(dir, { recursive: true, force: true });
  });

  it("e2e - one bad file in workflows/ is skipped with its file and field; the others are served", async () => {
    const log = await readFile(join(loom.logDir, "orchestrator.log"), "utf8");
    expect(log).toContain("workflow file skipped");
    expect(log).toMatch(/broken\.yaml: steps\.0: unknown field \\"args\\"/);
    const hello = await loom.cli(["submit", "hello", "--input", '{"contactId":"c-1"}', "--watch"], {
      token: alice,
    });
    expect(hello.code, hello.stderr).toBe(0);
  });

  it("e2e - an unknown field in a submitted or applied file is INVALID_WORKFLOW naming the step and field", async () => {
    const expected = `steps.0: unknown field "args" (it takes id, as, timeout, retry, call, with, onError)`;
    for (const command of [
      ["submit", file("typo.yaml")],
      ["workflow", "apply", file("typo.yaml")],
    ]) {
      const result = await loom.cli(command, { token: alice });
      expect(result.code).toBe(1);
      expect(result.stderr).toContain(`error INVALID_WORKFLOW: ${file("typo.yaml")}: ${expected}`);
      expect(result.stderr).not.toMatch(/INTERNAL|parallel|Invalid input/);
    }
    // Control: the same file, fixed, is registered (by an admin: policy decides workflow.apply).
    await writeFile(file("fixed.yaml"), TYPO.replace("args:", "with:"));
    const applied = await loom.cli(["workflow", "apply", file("fixed.yaml")], {
      token: tokenFor("ada", "admin"),
    });
    expect(applied.code, applied.stderr).toBe(0);
    expect(applied.stdout).toContain("typo v1 registered");
  });

  it("e2e - a call to a server or tool no worker offers fails the run UNKNOWN_SERVER / UNKNOWN_TOOL, not a policy rejection", async () => {
    const clock = await loom.cli(["submit", file("unknown_server.yaml"), "--watch", "--json"], {
      token: alice,
    });
    expect(clock.code).toBe(1);
    const clockRun = json(clock);
    expect(clockRun.state).toBe("failed");
    expect(clockRun.error).toMatchObject({ code: "UNKNOWN_SERVER" });
    expect(JSON.stringify(clockRun.error)).toContain('no MCP server \\"clock\\" is registered');

    const weather = await loom.cli(["submit", file("unknown_tool.yaml"), "--watch", "--json"], {
      token: alice,
    });
    expect(weather.code).toBe(1);
    expect(json(weather).error).toMatchObject({ code: "UNKNOWN_TOOL" });
    expect(JSON.stringify(json(weather).error)).toContain('offers no tool \\"get_weather\\"');
  });

  it("e2e - a missing --input @file names the file, not ENOENT", async () => {
    const result = await loom.cli(["submit", "hello", "--input", "@no-such-input.json"], { token: alice });
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(
      `error INVALID_INPUT: --input @no-such-input.json: there is no file ${join(REPO_ROOT, "no-such-input.json")}`,
    );
    expect(result.stderr).not.toContain("ENOENT");
  });

  it("e2e - a NATS on which Loom never ran says Loom's streams are missing and how to start Loom", async () => {
    await using bare = await startNatsServer();
    for (const command of [
      ["submit", "hello"],
      ["runs", "get", "some-run"],
      ["memory", "get", "some-context"],
    ]) {
      const result = await loom.cli(["--nats", bare.url, ...command], { token: alice });
      expect(result.code).toBe(1);
      expect(result.stderr).toContain(
        `error AGENT_UNAVAILABLE: NATS at ${bare.url} has none of Loom's streams`,
      );
      expect(result.stderr).toContain("npm start");
      expect(result.stderr).not.toMatch(/jetstream is not enabled|stream not found/);
    }
  });

  it("e2e - runs cancel and feedback on a run the caller may not see exit 1 as for an unknown run, with controls that exit 0", async () => {
    const hello = await loom.cli(["submit", "hello", "--input", '{"contactId":"c-1"}', "--watch", "--json"], {
      token: alice,
    });
    const helloRun = String(json(hello).runId);
    const refusedFeedback = await loom.cli(["feedback", helloRun, "now", "--ok"], { token: bob });
    // bob may not see alice's run: refused as if it did not exist (exit 1, like any unknown id).
    expect(refusedFeedback.code, refusedFeedback.stderr).toBe(1);
    expect(refusedFeedback.stderr).toContain(`error RUN_NOT_FOUND: no run with id ${helloRun}`);
    const feedback = await loom.cli(["feedback", helloRun, "now", "--ok"], { token: alice });
    expect(feedback.code, feedback.stderr).toBe(0);

    const submitted = await loom.cli(["submit", file("waits.yaml"), "--json"], { token: alice });
    const waiting = String(json(submitted).runId);
    let state = "";
    for (let tries = 0; tries < 50 && state !== "input-required"; tries += 1) {
      await sleep(200);
      const got = await loom.cli(["runs", "get", waiting, "--json"], { token: alice });
      state = got.code === 0 ? String(json(got).state) : "";
    }
    expect(state).toBe("input-required");
    const refusedCancel = await loom.cli(["runs", "cancel", waiting], { token: bob });
    expect(refusedCancel.code, refusedCancel.stderr).toBe(1);
    expect(refusedCancel.stderr).toContain(`error RUN_NOT_FOUND: no run with id ${waiting}`);
    const cancel = await loom.cli(["runs", "cancel", waiting], { token: alice });
    expect(cancel.code, cancel.stderr).toBe(0);
  });

  it("e2e - a server removed from the config leaves tools list and the gateway once its worker restarts", async () => {
    const before = json(await loom.cli(["tools", "list", "--json"])) as unknown as Array<{ server: string }>;
    expect(before.some((tool) => tool.server === "extra")).toBe(true);
    expect(await gatewayTools(mcpUrl)).toContain("extra.get_time");

    await writeFile(serversFile, `servers:${TIME}${CRM}\n`);
    await loom.stack.restart("mcp-worker");
    await waitUntilReady(await loom.connectAs(NatsUser.ORCHESTRATOR), {
      tools: ["time.get_time", "crm.get_contact"],
      timeoutMs: 30_000,
    });
    let servers: string[] = ["extra"];
    for (let tries = 0; tries < 50 && servers.includes("extra"); tries += 1) {
      await sleep(200);
      const listed = json(await loom.cli(["tools", "list", "--json"])) as unknown as Array<{
        server: string;
      }>;
      servers = listed.map((tool) => tool.server);
    }
    expect(servers).not.toContain("extra");
    expect(servers).toContain("time");
    const gateway = await gatewayTools(mcpUrl);
    expect(gateway).not.toContain("extra.get_time");
    expect(gateway).toContain("time.get_time");
    const log = await readFile(join(loom.logDir, "mcp-worker.log"), "utf8");
    expect(log).toContain(`MCP server \\"extra\\" is in no running worker's config any more`);
  });

  it("e2e - after a policy apply, a restarted acp-policy says it ignores LOOM_POLICY_DIR and why", async () => {
    const edited = (await readFile(join(REPO_ROOT, "infra/policies/default.yaml"), "utf8")).replace(
      /^version: .*$/m,
      'version: "edited"',
    );
    await writeFile(file("edited.yaml"), edited);
    const applied = await loom.cli(["policy", "apply", file("edited.yaml")]);
    expect(applied.code, applied.stderr).toBe(0);
    expect(applied.stdout).toContain("instead of its LOOM_POLICY_DIR files");

    const restarted = await loom.stack.restart("acp-policy");
    await waitUntilReady(await loom.connectAs(NatsUser.ORCHESTRATOR), {
      tools: ["time.get_time"],
      timeoutMs: 30_000,
    });
    const log = await readFile(restarted.logFile, "utf8");
    expect(log).toContain("using the policy applied with `loom policy apply`");
    expect(log).toMatch(/LOOM_POLICY_DIR \([^)]*infra\/policies\) holds 2@[0-9a-f]{12} and is not used/);
    // Control: the applied policy is the one deciding.
    const hello = await loom.cli(["submit", "hello", "--input", '{"contactId":"c-1"}', "--watch"], {
      token: alice,
    });
    expect(hello.code, hello.stderr).toBe(0);
  });
});
