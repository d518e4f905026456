import { mkdir, mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PEER_ENTRY } from "./mcp-peers.ts";

/** A temp dir holding a stack's config: server-everything as its one MCP server, and a policy. */
export interface EverythingConfig {
  /** The test removes it when done; extra files live here too. */
  dir: string;
  /** The environment that points a stack at this config. */
  env: { LOOM_MCP_SERVERS: string; LOOM_POLICY_DIR: string };
}

export interface EverythingConfigOptions {
  /** The contents of `policies/test.yaml`. */
  policy: string;
  /** The server's call timeout (for example `3s`); the worker's default when left out. */
  timeout?: string;
  /** More files to put in the dir (workflows, say), by name. */
  files?: Record<string, string>;
}

/** Writes `servers.yaml` (server-everything over stdio on Loom's Node.js) and the policy into a fresh dir. */
export async function writeEverythingConfig(
  prefix: string,
  options: EverythingConfigOptions,
): Promise<EverythingConfig> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  const servers = join(dir, "servers.yaml");
  const policies = join(dir, "policies");
  await writeFile(
    servers,
    `servers:
  - name: everything
    transport: { type: stdio, command: node, args: ["${PEER_ENTRY.everything}", stdio] }
${options.timeout === undefined ? "" : `    timeout: ${options.timeout}\n`}    governance: { owner: mcp-reference, data_classification: public, access_level: read }
`,
  );
  await mkdir(policies);
  await writeFile(join(policies, "test.yaml"), options.policy);
  for (const [name, contents] of Object.entries(options.files ?? {}))
    await writeFile(join(dir, name), contents);
  return { dir, env: { LOOM_MCP_SERVERS: servers, LOOM_POLICY_DIR: policies } };
}
