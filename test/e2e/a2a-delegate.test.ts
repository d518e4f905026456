import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
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
    await writeFile(
      join(dir, "ask-remote-enrich.yaml"),
      `id: ask-remote-enrich
steps:
  - id: enrich
    delegate: { url: "${remoteUrl}", skill: crm-enrich, message: { contactId: "{% $input.contactId %}" } }
    timeout: 60s
output: "{% $steps.enrich %}"
`,
    );
    remote = await startLoom({ env: { LOOM_A2A_PORT: String(remotePort) } });
    upstream = await startLoom({
      env: {
        LOOM_A2A_DELEGATE_ALLOW: `${remoteUrl}/`,
        LOOM_A2A_OUTBOUND_CREDENTIALS: JSON.stringify({
          [remoteUrl]: `Bearer ${tokenFor("loom-a", "analyst", "manager")}`,
        }),
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

  it("a2a - a remote agent's question becomes the run's own input-required, and the answer goes back to it", async () => {
    const analyst = tokenFor("alice", "analyst");
    const submitted = await upstream.cli(
      ["submit", join(dir, "ask-remote-enrich.yaml"), "--input", '{"contactId":"c-2"}', "--json"],
      { token: analyst },
    );
    const { runId } = JSON.parse(submitted.stdout) as { runId: string };
    const stateOf = async () =>
      JSON.parse((await upstream.cli(["runs", "get", runId, "--json"], { token: analyst })).stdout) as {
        state: string;
        output?: unknown;
      };
    const until = async (state: string) => {
      const deadline = Date.now() + 30_000;
      let run = await stateOf();
      while (run.state !== state && Date.now() < deadline) {
        await sleep(200);
        run = await stateOf();
      }
      return run;
    };
    expect((await until("input-required")).state).toBe("input-required");

    const answered = await upstream.cli(["runs", "input", runId, "--approve"], {
      token: tokenFor("mia", "manager"),
    });
    expect(answered.code).toBe(0);
    const done = await until("completed");
    expect(done.output).toMatchObject({ contact: "Grace Hopper", escalated: true });
  });
});
