import { mkdir, mkdtemp, readdir, readFile, realpath, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type CliResult, type Loom, startLoom, tokenFor } from "../helpers/loom.ts";
import {
  CARRY_ON,
  escapeAttempts,
  mismatches,
  type Outcome,
  PEER_ENTRY,
  PEER_SERVERS,
  type PeerCall,
  type PeerSandbox,
  type PeerServer,
  peerCalls,
  peerReadsAndPrompts,
  stepIdFor,
} from "../helpers/mcp-peers.ts";

const TOKEN = tokenFor("pat", "peer-tester");

/** The smallest PNG there is (1x1, one transparent pixel). */
const PNG = Buffer.from(
  "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII=",
  "base64",
);

function serversYaml(sandbox: PeerSandbox): string {
  const governance = (classification: string, access: string) =>
    `{ owner: mcp-reference, data_classification: ${classification}, access_level: ${access} }`;
  return `
servers:
  - name: everything
    transport:
      type: stdio
      command: node
      args: ["${PEER_ENTRY.everything}", stdio]
      env: { ${sandbox.envMarker.name}: "${sandbox.envMarker.value}" }
    timeout: 15s
    governance: ${governance("public", "read")}
  - name: filesystem
    transport: { type: stdio, command: node, args: ["${PEER_ENTRY.filesystem}", "${sandbox.root}"] }
    timeout: 10s
    governance: ${governance("internal", "write")}
  - name: memory
    transport:
      type: stdio
      command: node
      args: ["${PEER_ENTRY.memory}"]
      env: { MEMORY_FILE_PATH: "${sandbox.memoryFile}" }
    timeout: 10s
    governance: ${governance("internal", "write")}
`;
}

const POLICY = `
version: "peers"
rules:
  - { name: peer-testers-start, effect: allow, roles: [peer-tester], actions: [workflow.start], workflows: ["*"] }
  - name: peer-testers-use-peers
    effect: allow
    roles: [peer-tester]
    actions: [tools.call, resources.read, prompts.get]
    tools: ["everything.*", "filesystem.*", "memory.*"]
`;

interface RunSummary {
  state: string;
  output?: Record<string, unknown>;
  error?: { code: string; message: string };
  /** MCP progress the steps reported, in order. */
  progress?: Array<{ stepId?: string; progress: number; total?: number; message?: string }>;
}

interface PeerRun {
  /** The tools the run calls, qualified. */
  called: string[];
  outcomes: Map<string, Outcome>;
  result: Promise<CliResult>;
}

/**
 * `loom tools list --json` once it stops changing: the worker records a server's tools one by one,
 * and the stack counts as ready when the first is there.
 */
async function settledToolList(loom: Loom): Promise<Array<{ server: string; name: string }>> {
  let previous = "";
  for (;;) {
    const { stdout, stderr, code } = await loom.cli(["tools", "list", "--json"]);
    if (code !== 0) throw new Error(`loom tools list failed: ${stderr}`);
    const names = JSON.stringify(
      (JSON.parse(stdout) as Array<{ server: string; name: string }>).map(({ server, name }) => ({
        server,
        name,
      })),
    );
    if (names === previous) return JSON.parse(names);
    previous = names;
  }
}

describe("e2e - third-party MCP servers behind the worker, through workflows", () => {
  let loom: Loom;
  let dir: string;
  let sandbox: PeerSandbox;
  let listed: Array<{ server: string; name: string }>;
  let calls: Record<string, PeerCall>;
  const runs = new Map<PeerServer | "containment", PeerRun>();

  /** Submits one inline workflow of `steps` (each carrying on after a failure); output is `$steps`. */
  async function submit(id: string, steps: Array<Record<string, unknown>>): Promise<CliResult> {
    const file = join(dir, `${id}.json`);
    await writeFile(file, JSON.stringify({ id, steps, output: "{% $steps %}" }));
    return loom.cli(["submit", file, "--watch", "--json"], { token: TOKEN, timeoutMs: 60_000 });
  }

  function startPeerRun(server: PeerServer): PeerRun {
    const outcomes = new Map<string, Outcome>();
    const steps: Array<Record<string, unknown>> = [];
    const called: string[] = [];
    for (const [qualified, call] of Object.entries(calls)) {
      const [owner, tool = ""] = qualified.split(/\.(.*)/s);
      if (owner !== server || !listed.some((entry) => entry.server === server && entry.name === tool))
        continue;
      const id = stepIdFor(tool);
      steps.push({ id, call: qualified, with: call.with, ...CARRY_ON });
      outcomes.set(id, call);
      called.push(qualified);
    }
    for (const { step, ...outcome } of peerReadsAndPrompts()[server]) {
      steps.push({ ...step, ...CARRY_ON });
      outcomes.set(step.id, outcome as Outcome);
    }
    return { called, outcomes, result: submit(`peers-${server}`, steps) };
  }

  function startContainmentRun(): PeerRun {
    const outcomes = new Map<string, Outcome>();
    const steps = Object.entries(escapeAttempts(sandbox)).map(([id, { call, with: args, ...outcome }]) => {
      outcomes.set(id, outcome as Outcome);
      return { id, call, with: args, ...CARRY_ON };
    });
    return { called: [], outcomes, result: submit("peers-containment", steps) };
  }

  async function finished(name: PeerServer | "containment"): Promise<{ run: PeerRun; summary: RunSummary }> {
    const run = runs.get(name);
    if (run === undefined) throw new Error(`no run for ${name}`);
    const { stdout, stderr } = await run.result;
    expect(stderr).toBe("");
    return { run, summary: JSON.parse(stdout) as RunSummary };
  }

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "loom-peers-"));
    // Real paths: server-filesystem compares resolved paths, and tmpdir may sit behind a symlink.
    const root = await realpath(await mkdtemp(join(tmpdir(), "loom-peers-root-")));
    const outside = await realpath(await mkdtemp(join(tmpdir(), "loom-peers-outside-")));
    sandbox = {
      root,
      outside,
      memoryFile: join(dir, "memory.jsonl"),
      png: PNG,
      envMarker: { name: "PEERS_MARKER", value: "set-by-config" },
    };
    await writeFile(join(root, "seed.txt"), "seeded by the test\n");
    await writeFile(join(root, "pixel.png"), PNG);
    await symlink(outside, join(root, "escape-hatch"));
    await writeFile(join(dir, "servers.yaml"), serversYaml(sandbox));
    await mkdir(join(dir, "policies"));
    await writeFile(join(dir, "policies", "peers.yaml"), POLICY);
    loom = await startLoom({
      env: { LOOM_MCP_SERVERS: join(dir, "servers.yaml"), LOOM_POLICY_DIR: join(dir, "policies") },
      tools: ["everything.echo", "filesystem.write_file", "memory.create_entities"],
    });
    listed = await settledToolList(loom);
    calls = peerCalls(sandbox);
    // All runs at once: one stack, few workflows, many steps each.
    for (const server of PEER_SERVERS) runs.set(server, startPeerRun(server));
    runs.set("containment", startContainmentRun());
  });

  afterAll(async () => {
    await Promise.allSettled([...runs.values()].map((run) => run.result));
    await loom?.[Symbol.asyncDispose]();
    for (const path of [dir, sandbox?.root, sandbox?.outside]) {
      if (path !== undefined) await rm(path, { recursive: true, force: true });
    }
  });

  it("mcp peers - every tool each peer lists has arguments and an expected outcome here", () => {
    expect(new Set(listed.map((tool) => tool.server))).toEqual(new Set(PEER_SERVERS));
    const missing = listed
      .map((tool) => `${tool.server}.${tool.name}`)
      .filter((qualified) => calls[qualified] === undefined);
    expect(missing, "add arguments and an expected outcome for these tools to peerCalls").toEqual([]);
  });

  it.each(PEER_SERVERS)(
    "mcp peers - every tool, resource and prompt of %s answers through a workflow",
    async (server) => {
      const { run, summary } = await finished(server);
      expect(summary.state).toBe("completed");
      expect(run.called.sort()).toEqual(
        listed
          .filter((tool) => tool.server === server)
          .map((tool) => `${server}.${tool.name}`)
          .sort(),
      );
      expect(mismatches(summary.output ?? {}, run.outcomes)).toEqual([]);
    },
  );

  it("mcp peers - what server-filesystem did through the workflow is on disk", async () => {
    await finished("filesystem");
    expect(await readFile(join(sandbox.root, "docs", "moved.txt"), "utf8")).toBe("alpha\ngamma\n");
    expect((await readdir(join(sandbox.root, "docs"))).sort()).toEqual(["moved.txt"]);
  });

  it("mcp peers - server-memory kept its graph in the file its config names", async () => {
    await finished("memory");
    const lines = (await readFile(sandbox.memoryFile, "utf8")).trim().split("\n");
    expect(lines.map((line) => JSON.parse(line))).toEqual([
      { type: "entity", name: "Ada", entityType: "person", observations: ["wrote the first program"] },
    ]);
  });

  it("mcp peers - server-filesystem refuses every way out of its directory with a typed error, and nothing is written outside", async () => {
    const { run, summary } = await finished("containment");
    expect(summary.state).toBe("completed");
    expect(mismatches(summary.output ?? {}, run.outcomes)).toEqual([]);
    expect(await readdir(sandbox.outside)).toEqual([]);
    expect(await readFile(join(sandbox.root, "seed.txt"), "utf8")).toBe("seeded by the test\n");
  });

  describe("progress", () => {
    it("mcp peers - a tool's progress notifications show as run events", async () => {
      const { summary } = await finished("everything");
      const step = stepIdFor("trigger-long-running-operation");
      expect(summary.progress?.filter((entry) => entry.stepId === step)).toEqual([
        { stepId: step, progress: 1, total: 2 },
        { stepId: step, progress: 2, total: 2 },
      ]);
    });
  });
});
