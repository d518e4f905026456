import { mkdir, mkdtemp, realpath, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Loom, startLoom } from "./loom.ts";
import { PEER_ENTRY, type PeerSandbox } from "./mcp-peers.ts";

/** The smallest PNG there is (1x1, one transparent pixel). */
const PNG = Buffer.from(
  "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII=",
  "base64",
);

/** The role the peers tests call with; `OUTSIDER_ROLE` is one policy keeps away from the peers. */
export const PEER_TESTER_ROLE = "peer-tester";
export const OUTSIDER_ROLE = "peer-outsider";
/** The rule that denies outsiders every primitive of the peers: a denial must name it. */
export const OUTSIDERS_RULE = "outsiders-never-touch-peers";

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
  - { name: peer-testers-start, effect: allow, roles: [${PEER_TESTER_ROLE}], actions: [workflow.start], workflows: ["*"] }
  - { name: starters-follow-their-runs, effect: allow, roles: ["*"], actions: [runs.read, runs.subscribe], workflows: ["*"], when: "principal.id == resource.started_by" }
  - name: peer-testers-use-peers
    effect: allow
    roles: [${PEER_TESTER_ROLE}]
    actions: [tools.call, resources.read, prompts.get]
    tools: ["everything.*", "filesystem.*", "memory.*"]
  - name: peer-testers-let-everything-sample
    effect: allow
    roles: [${PEER_TESTER_ROLE}]
    actions: [llm.sample]
    tools: [everything]
  - name: ${OUTSIDERS_RULE}
    effect: deny
    roles: [${OUTSIDER_ROLE}]
    actions: [tools.call, resources.read, prompts.get]
    tools: ["everything.*", "filesystem.*", "memory.*"]
`;

/** A whole Loom with the three peers behind its worker, each touching only a fresh sandbox. */
export interface PeerStack extends AsyncDisposable {
  loom: Loom;
  /** A scratch directory of the test's own (workflow files and the like). */
  dir: string;
  sandbox: PeerSandbox;
  /** Every tool the peers registered, once the list stopped changing. */
  listed: Array<{ server: string; name: string }>;
}

/** Starts the stack once for a test file; `env` adds to every service's environment. */
export async function startPeerStack(env: Record<string, string> = {}): Promise<PeerStack> {
  const dir = await mkdtemp(join(tmpdir(), "loom-peers-"));
  // Real paths: server-filesystem compares resolved paths, and tmpdir may sit behind a symlink.
  const root = await realpath(await mkdtemp(join(tmpdir(), "loom-peers-root-")));
  const outside = await realpath(await mkdtemp(join(tmpdir(), "loom-peers-outside-")));
  const sandbox: PeerSandbox = {
    root,
    outside,
    memoryFile: join(dir, "memory.jsonl"),
    png: PNG,
    envMarker: { name: "PEERS_MARKER", value: "set-by-config" },
  };
  const removeAll = async () => {
    for (const path of [dir, root, outside]) await rm(path, { recursive: true, force: true });
  };
  let loom: Loom | undefined;
  try {
    await writeFile(join(root, "seed.txt"), "seeded by the test\n");
    await writeFile(join(root, "pixel.png"), PNG);
    await symlink(outside, join(root, "escape-hatch"));
    await writeFile(join(dir, "servers.yaml"), serversYaml(sandbox));
    await mkdir(join(dir, "policies"));
    await writeFile(join(dir, "policies", "peers.yaml"), POLICY);
    loom = await startLoom({
      env: {
        LOOM_MCP_SERVERS: join(dir, "servers.yaml"),
        LOOM_POLICY_DIR: join(dir, "policies"),
        // No one answers server-everything's elicitation in these tests: Loom tells it "cancel".
        LOOM_ELICITATION_TIMEOUT_MS: "3000",
        ...env,
      },
      tools: ["everything.echo", "filesystem.write_file", "memory.create_entities"],
    });
    const started = loom;
    return {
      loom: started,
      dir,
      sandbox,
      listed: await settledToolList(started),
      async [Symbol.asyncDispose]() {
        await started[Symbol.asyncDispose]();
        await removeAll();
      },
    };
  } catch (error) {
    await loom?.[Symbol.asyncDispose]();
    await removeAll();
    throw error;
  }
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
