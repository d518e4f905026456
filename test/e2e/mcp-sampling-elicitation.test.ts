import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Loom, REPO_ROOT, startLoom, tokenFor } from "../helpers/loom.ts";

const EVERYTHING = join(REPO_ROOT, "node_modules/@modelcontextprotocol/server-everything/dist/index.js");

const SERVERS = `
servers:
  - name: everything
    transport: { type: stdio, command: node, args: ["${EVERYTHING}", stdio] }
    timeout: 10s
    governance: { owner: mcp-reference, data_classification: public, access_level: read }
`;

/** Testers may let server-everything sample; guests may call its tools but not sample. */
const POLICY = `
version: "test"
rules:
  - { name: people-start, effect: allow, roles: [tester, guest], actions: [workflow.start], workflows: ["*"] }
  - { name: people-use-everything, effect: allow, roles: [tester, guest], actions: [tools.call], tools: ["everything.*"] }
  - { name: testers-sample-through-everything, effect: allow, roles: [tester], actions: [llm.sample], tools: [everything] }
  - { name: testers-answer, effect: allow, roles: [tester], actions: [runs.approve], workflows: ["*"] }
`;

const SAMPLE = `
id: sample-demo
steps:
  - id: ask
    call: everything.trigger-sampling-request
    with: { prompt: "{% $input.prompt %}", maxTokens: 50 }
`;

interface AuditLine {
  kind: string;
  action?: string;
  effect?: string;
  rule?: string;
  resource: string;
  outcome?: string;
  principal: string;
  stepId?: string;
}

describe("e2e - MCP sampling and elicitation from server-everything", () => {
  let loom: Loom;
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "loom-sampling-"));
    await writeFile(join(dir, "servers.yaml"), SERVERS);
    await mkdir(join(dir, "policies"));
    await writeFile(join(dir, "policies", "test.yaml"), POLICY);
    await writeFile(join(dir, "sample.yaml"), SAMPLE);
    loom = await startLoom({
      env: { LOOM_MCP_SERVERS: join(dir, "servers.yaml"), LOOM_POLICY_DIR: join(dir, "policies") },
      tools: ["everything.trigger-sampling-request", "everything.trigger-elicitation-request"],
    });
  });
  afterAll(async () => {
    await loom?.[Symbol.asyncDispose]();
    await rm(dir, { recursive: true, force: true });
  });

  it("sampling - a step's server samples the local model, and the audit holds the decision and the answer", async () => {
    const { code, stdout, stderr } = await loom.cli(
      ["submit", join(dir, "sample.yaml"), "--input", '{"prompt":"what is loom?"}', "--watch", "--json"],
      { token: tokenFor("tess", "tester") },
    );
    expect(stderr).toBe("");
    const summary = JSON.parse(stdout);
    expect(summary.state).toBe("completed");
    expect(code).toBe(0);
    expect(summary.output).toContain('"model": "loom-local-echo"');
    expect(summary.output).toContain(
      "loom-local-echo: Resource trigger-sampling-request context: what is loom?",
    );

    const audit = await loom.cli(["audit", "tail", "--run", summary.runId, "--json", "-n", "50"]);
    const records = audit.stdout
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line) as AuditLine);
    expect(records).toContainEqual(
      expect.objectContaining({
        kind: "policy.decision",
        action: "llm.sample",
        resource: "everything",
        effect: "allow",
        rule: "testers-sample-through-everything",
        principal: "tess",
        stepId: "ask",
      }),
    );
    expect(records).toContainEqual(
      expect.objectContaining({
        kind: "llm.answer",
        action: "llm.sample",
        resource: "everything",
        outcome: "ok",
        principal: "tess",
      }),
    );
  });

  it("sampling - a role without llm.sample gets the tool's error naming the rule that denied it", async () => {
    const { code, stdout } = await loom.cli(
      ["submit", join(dir, "sample.yaml"), "--input", '{"prompt":"hi"}', "--watch", "--json"],
      { token: tokenFor("gus", "guest") },
    );
    expect(code).toBe(1);
    const summary = JSON.parse(stdout);
    expect(summary.state).toBe("failed");
    expect(summary.error.code).toBe("TOOL_ERROR");
    expect(summary.error.message).toContain("policy denied sampling through everything (rule default-deny)");
  });
});
