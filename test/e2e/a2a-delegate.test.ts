import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Loom, startLoom, tokenFor } from "../helpers/loom.ts";
import { freePort } from "../helpers/ports.ts";

/** Loom A delegates a step to Loom B, a separate stack reached only through its A2A edge. */
describe("a2a - delegate steps reach external A2A agents by URL", () => {
  let upstream: Loom;
  let remote: Loom;
  let dir: string;
  beforeAll(async () => {
    const remotePort = await freePort();
    const remoteUrl = `http://127.0.0.1:${remotePort}`;
    dir = await mkdtemp(join(tmpdir(), "loom-delegate-"));
    await writeFile(
      join(dir, "ask-remote.yaml"),
      `id: ask-remote
steps:
  - id: remote
    delegate: { url: "${remoteUrl}", skill: hello, message: { contactId: "{% $input.contactId %}" } }
    timeout: 20s
output: "{% 'remote says: ' & $steps.remote.greeting %}"
`,
    );
    remote = await startLoom({ env: { LOOM_A2A_PORT: String(remotePort) } });
    upstream = await startLoom({
      env: {
        LOOM_A2A_OUTBOUND_CREDENTIALS: JSON.stringify({ [remoteUrl]: `Bearer ${tokenFor("loom-a", "analyst")}` }),
      },
    });
  });
  afterAll(async () => {
    await upstream?.[Symbol.asyncDispose]();
    await remote?.[Symbol.asyncDispose]();
    await rm(dir, { recursive: true, force: true });
  });

  it("a2a - a delegate step runs a skill of another Loom and streams its progress into the run", async () => {
    const { code, stdout } = await upstream.cli(
      ["submit", join(dir, "ask-remote.yaml"), "--input", '{"contactId":"c-3"}', "--watch"],
      { token: tokenFor("alice", "analyst") },
    );
    expect(stdout).toContain("remote says: Hello, Margaret Hamilton");
    expect(stdout).toMatch(/step remote: remote agent (working|completed)/);
    expect(code).toBe(0);
  });

  it("a2a - an external agent's failure fails the step with its reason", async () => {
    const { code, stdout } = await upstream.cli(
      ["submit", join(dir, "ask-remote.yaml"), "--input", '{"contactId":"c-404"}', "--watch", "--json"],
      { token: tokenFor("alice", "analyst") },
    );
    expect(code).toBe(1);
    const summary = JSON.parse(stdout);
    expect(summary.error.message).toMatch(/ended its task TASK_STATE_FAILED/);
  });
});
