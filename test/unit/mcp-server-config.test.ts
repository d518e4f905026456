import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ErrorCode } from "../../schemas/errors.ts";
import { LoomError } from "../../services/kit/errors.ts";
import { loadServerList } from "../../services/mcp-worker/server-config.ts";

const SHIPPED = join(import.meta.dirname, "../../infra/mcp-servers.yaml");
const GOVERNANCE = "governance: { owner: team, data_classification: internal, access_level: read }";

describe("MCP server list", () => {
  let dir: string;
  let file: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "loom-mcp-config-"));
    file = join(dir, "servers.yaml");
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("mcp config - the shipped infra/mcp-servers.yaml loads with no refusals", async () => {
    const list = await loadServerList(SHIPPED);
    expect(list.refused).toEqual([]);
    expect(list.servers.map((server) => server.name)).toEqual(["time", "crm", "ledger"]);
    const crm = list.servers.find((server) => server.name === "crm");
    expect(crm?.timeout).toBe(10_000);
    expect(crm?.governance.data_classification).toBe("restricted");
    expect(crm?.transport).toMatchObject({
      type: "stdio",
      command: "node",
      args: [join(import.meta.dirname, "../../services/mcp-servers/crm.ts")],
    });
  });

  it("mcp config - refuses a server without governance metadata and still loads the others", async () => {
    await writeFile(
      file,
      `servers:
  - name: good
    transport: { type: stdio, command: node, args: [good.ts] }
    ${GOVERNANCE}
  - name: ungoverned
    transport: { type: stdio, command: node, args: [bad.ts] }
  - name: also-good
    transport: { type: http, url: "http://127.0.0.1:9/mcp" }
    ${GOVERNANCE}
`,
    );
    const list = await loadServerList(file);
    expect(list.servers.map((server) => server.name)).toEqual(["good", "also-good"]);
    expect(list.refused).toHaveLength(1);
    expect(list.refused[0]?.name).toBe("ungoverned");
    expect(list.refused[0]?.reason).toContain("governance metadata");
  });

  it("mcp config - refuses partial governance metadata, naming the missing field", async () => {
    await writeFile(
      file,
      `servers:
  - name: half
    transport: { type: stdio, command: node }
    governance: { owner: team, access_level: read }
`,
    );
    const list = await loadServerList(file);
    expect(list.servers).toEqual([]);
    expect(list.refused[0]?.reason).toContain("governance metadata");
    expect(list.refused[0]?.reason).toContain("governance.data_classification");
  });

  it("mcp config - refuses an otherwise invalid entry with its reason, named by position when nameless", async () => {
    await writeFile(
      file,
      `servers:
  - transport: { type: stdio, command: node }
    ${GOVERNANCE}
  - name: bad-timeout
    transport: { type: stdio, command: node }
    timeout: soon
    ${GOVERNANCE}
`,
    );
    const list = await loadServerList(file);
    expect(list.servers).toEqual([]);
    expect(list.refused.map((refused) => refused.name)).toEqual(["#1", "bad-timeout"]);
    expect(list.refused[0]?.reason).toContain("name");
    expect(list.refused[1]?.reason).toContain("timeout");
    expect(list.refused[1]?.reason).not.toContain("governance");
  });

  it("mcp config - resolves relative args and cwd against the config file's folder", async () => {
    await writeFile(
      file,
      `servers:
  - name: local
    transport:
      type: stdio
      command: node
      args: [./server.ts, ../shared/other.ts, --flag, plain.ts, /abs/path.ts]
      cwd: work
    ${GOVERNANCE}
  - name: default-cwd
    transport: { type: stdio, command: node }
    ${GOVERNANCE}
`,
    );
    const list = await loadServerList(file);
    expect(list.refused).toEqual([]);
    const [local, defaultCwd] = list.servers;
    expect(local?.transport).toMatchObject({
      args: [join(dir, "server.ts"), join(dir, "../shared/other.ts"), "--flag", "plain.ts", "/abs/path.ts"],
      cwd: join(dir, "work"),
    });
    expect(defaultCwd?.transport).toMatchObject({ cwd: dir, args: [] });
  });

  it("mcp config - refuses a second server with the same name", async () => {
    await writeFile(
      file,
      `servers:
  - name: crm
    description: first
    transport: { type: stdio, command: node }
    ${GOVERNANCE}
  - name: crm
    description: second
    transport: { type: stdio, command: node }
    ${GOVERNANCE}
`,
    );
    const list = await loadServerList(file);
    expect(list.servers).toHaveLength(1);
    expect(list.servers[0]?.description).toBe("first");
    expect(list.refused).toEqual([{ name: "crm", reason: expect.stringContaining("already") }]);
  });

  it("mcp config - a missing file is CONFIG_INVALID naming the file", async () => {
    const missing = join(dir, "nope.yaml");
    await expect(loadServerList(missing)).rejects.toMatchObject({
      code: ErrorCode.CONFIG_INVALID,
      message: expect.stringContaining(missing),
    });
  });

  it("mcp config - a file without a servers list is CONFIG_INVALID naming the file", async () => {
    await writeFile(file, "server:\n  - name: typo\n");
    const error = await loadServerList(file).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(LoomError);
    expect((error as LoomError).code).toBe(ErrorCode.CONFIG_INVALID);
    expect((error as LoomError).message).toContain(file);
  });

  it("mcp config - invalid YAML is CONFIG_INVALID", async () => {
    await writeFile(file, "servers: [ { name: x\n");
    await expect(loadServerList(file)).rejects.toMatchObject({ code: ErrorCode.CONFIG_INVALID });
  });
});
