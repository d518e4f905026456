import { copyFile, mkdir, mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { REPO_ROOT } from "./loom.ts";

/** A temp dir holding a stack's config: the leaky server beside the demo crm and time servers. */
export interface LeakyConfig {
  dir: string;
  env: { LOOM_MCP_SERVERS: string; LOOM_POLICY_DIR: string };
}

/**
 * The shipped policy plus rules for the leaky server: viewers get its data masked (email, phone
 * and SSN, as fields and wherever they appear), analysts see it as it is.
 */
const LEAKY_POLICY = `version: "leaky"
rules:
  - name: viewers-see-leaky-masked
    effect: allow
    roles: [viewer]
    actions: [tools.call, resources.read, prompts.get]
    tools: ["leaky.*"]
    obligations:
      mask:
        fields: [email, phone, ssn]
        pii: [email, ssn, phone]
  - name: analysts-see-leaky
    effect: allow
    roles: [analyst]
    actions: [tools.call, resources.read, prompts.get]
    tools: ["leaky.*"]
  - name: leaky-callers-sample
    effect: allow
    roles: [analyst, viewer]
    actions: [llm.sample]
    tools: [leaky]
`;

/** Writes `servers.yaml`, the policy folder and `files` (workflows, say) into a fresh dir. */
export async function writeLeakyConfig(
  prefix: string,
  files: Record<string, string> = {},
): Promise<LeakyConfig> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  const servers = join(dir, "servers.yaml");
  const demo = (name: string) => join(REPO_ROOT, "services/mcp-servers", `${name}.ts`);
  await writeFile(
    servers,
    `servers:
  - name: leaky
    transport: { type: stdio, command: node, args: ["${join(REPO_ROOT, "test/helpers/leaky-mcp-server.ts")}"] }
    timeout: 10s
    cache: { ttl: 60s, tools: [contact] }
    governance: { owner: security-tests, data_classification: internal, access_level: read }
  - name: crm
    transport: { type: stdio, command: node, args: ["${demo("crm")}"] }
    timeout: 10s
    governance: { owner: sales-ops, data_classification: restricted, access_level: write, region: eu }
  - name: time
    transport: { type: stdio, command: node, args: ["${demo("time")}"] }
    timeout: 5s
    governance: { owner: platform-team, data_classification: public, access_level: read }
`,
  );
  const policies = join(dir, "policies");
  await mkdir(policies);
  await copyFile(join(REPO_ROOT, "infra/policies/default.yaml"), join(policies, "default.yaml"));
  await writeFile(join(policies, "leaky.yaml"), LEAKY_POLICY);
  for (const [name, contents] of Object.entries(files)) await writeFile(join(dir, name), contents);
  return { dir, env: { LOOM_MCP_SERVERS: servers, LOOM_POLICY_DIR: policies } };
}

/** Workflows that take the leaky server down every path: failures, then everything else. */
export const LEAKY_WORKFLOWS = {
  "leak-error.yaml": "id: leak-error\nversion: 1\nsteps:\n  - { id: fail, call: leaky.leak_error }\n",
  "leak-throw.yaml": "id: leak-throw\nversion: 1\nsteps:\n  - { id: fail, call: leaky.leak_throw }\n",
  "leak-read.yaml": 'id: leak-read\nversion: 1\nsteps:\n  - { id: fail, read: "mcp://leaky/broken/c-1" }\n',
  "leak-paths.yaml": `id: leak-paths
version: 1
steps:
  - { id: progress, call: leaky.leak_progress }
  - { id: elicit, call: leaky.leak_elicit }
  - { id: sample, call: leaky.leak_sample }
  - { id: prompt, prompt: leaky.leak_prompt, with: { who: "the team" } }
  - { id: contact, call: leaky.contact, with: { id: c-2 } }
`,
} as const;
