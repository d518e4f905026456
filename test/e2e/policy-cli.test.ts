import { type ChildProcess, spawn } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PolicyDecideContract } from "../../schemas/contracts.ts";
import { Buckets, Headers, Streams, Subjects } from "../../schemas/subjects.ts";
import { type Stack, startStack } from "../../services/cli/stack.ts";
import { request } from "../../services/kit/index.ts";
import { followRun, watchRun } from "../../services/kit/run-watch.ts";
import { type Loom, NatsUser, REPO_ROOT, startLoom, tokenFor } from "../helpers/loom.ts";
import { testServiceEnv } from "../helpers/service-env.ts";
import { signJwt, TEST_AUTH_ENV, validClaims } from "../helpers/tokens.ts";

const CASES = "infra/policies/tests/default.cases.yaml";
const NO_CLOCK_SKEW = { LOOM_AUTH_CLOCK_SKEW: "0s" };

describe("e2e - policy, token and audit commands", () => {
  let loom: Loom;
  let replica: Stack;
  let dir: string;
  beforeAll(async () => {
    // No leeway on a token's expiry, so a token can die within the test of a run outliving it.
    loom = await startLoom({ env: NO_CLOCK_SKEW });
    dir = await mkdtemp(join(tmpdir(), "loom-policy-cli-"));
    // A second acp-policy replica: an applied policy must reach every replica.
    replica = await startStack({
      natsUrl: loom.users.urlAs(NatsUser.ACP_POLICY),
      logDir: join(dir, "logs"),
      services: ["acp-policy"],
      env: { ...testServiceEnv(), ...TEST_AUTH_ENV, ...NO_CLOCK_SKEW, LOOM_HTTP_PORT: "0" },
    });
  });
  afterAll(async () => {
    await replica?.stop();
    await loom?.[Symbol.asyncDispose]();
    await rm(dir, { recursive: true, force: true });
  });

  /**
   * Resolves once `loom audit tail --follow` consumes the audit stream from its end: from then on
   * it prints every record appended.
   */
  async function followerListening(follower: ChildProcess): Promise<void> {
    const jsm = await jetstreamManager(loom.observer);
    const deadline = Date.now() + 30_000;
    for (;;) {
      const consumers = await jsm.consumers.list(Streams.AUDIT).next();
      if (consumers.some((consumer) => consumer.config.opt_start_seq !== undefined)) return;
      if (follower.exitCode !== null) throw new Error(`audit tail --follow exited with ${follower.exitCode}`);
      if (Date.now() > deadline) throw new Error("audit tail --follow never started consuming");
      await sleep(100);
    }
  }

  // The orchestrator's user asks policy, as the orchestrator does.
  const decideAsAnalyst = async () =>
    request(
      await loom.connectAs(NatsUser.ORCHESTRATOR),
      Subjects.POLICY_DECIDE,
      PolicyDecideContract,
      { action: "tools.call", resource: { tool: "crm.get_contact" }, arguments: { id: "c-1" } },
      { timeoutMs: 5_000, headers: { [Headers.AUTHORIZATION]: `Bearer ${tokenFor("ann", "analyst")}` } },
    );

  it("e2e - loom policy explain lists every rule and names the deciding one", async () => {
    const { code, stdout } = await loom.cli(
      ["policy", "explain", "--tool", "crm.get_contact", "--args", '{"id":"c-1"}'],
      { token: tokenFor("vic", "viewer") },
    );
    expect(code).toBe(0);
    expect(stdout).toMatch(/✓\s+viewers-see-masked-contacts\s+allow\s+every condition holds/);
    expect(stdout).toMatch(/·\s+only-admins-delete\s+deny\s+tool does not match/);
    expect(stdout).toContain("decision   allow by viewers-see-masked-contacts");
    expect(stdout).toContain('"maskFields":["email","phone","ssn"]');

    const refused = await loom.cli(
      ["policy", "explain", "--tool", "crm.delete_record", "--args", '{"id":"c-1"}'],
      {
        token: tokenFor("ann", "analyst"),
      },
    );
    expect(refused.code).toBe(2);
    expect(refused.stdout).toContain("decision   deny by only-admins-delete");
  });

  it("e2e - loom policy test passes the shipped cases and fails a wrong expectation", async () => {
    const ok = await loom.cli(["policy", "test", CASES]);
    expect(ok.code, ok.stdout).toBe(0);
    expect(ok.stdout).toMatch(/43 cases, 43 passed, 0 failed/);

    const wrong = join(dir, "wrong.cases.yaml");
    await writeFile(
      wrong,
      `policy: ${join(process.cwd(), "infra/policies")}\ncases:\n  - name: viewers may delete\n    principal: { id: v, roles: [viewer] }\n    action: tools.call\n    resource: { tool: crm.delete_record }\n    expect: { effect: allow }\n`,
    );
    const failed = await loom.cli(["policy", "test", wrong]);
    expect(failed.code).toBe(1);
    expect(failed.stdout).toMatch(/FAIL {2}viewers may delete: effect deny, expected allow/);
  });

  it("e2e - loom policy apply switches every replica within a second; a bad file is refused", async () => {
    expect((await decideAsAnalyst()).effect).toBe("allow");
    const strict = join(dir, "strict.yaml");
    await writeFile(
      strict,
      'version: "9"\nrules:\n  - { name: only-time, effect: allow, roles: ["*"], actions: [tools.call], tools: ["time.*"] }\n',
    );
    const applied = await loom.cli(["policy", "apply", strict]);
    expect(applied.code, applied.stderr).toBe(0);
    expect(applied.stdout).toMatch(/applied policy 9@[0-9a-f]{12} \(1 rules\)/);
    const started = Date.now();
    // Both replicas serve the queue group: every one of many decisions must follow the new policy.
    let switched = false;
    while (!switched && Date.now() - started < 5_000) {
      const decisions = await Promise.all(Array.from({ length: 20 }, decideAsAnalyst));
      switched = decisions.every((decision) => decision.rule === "default-deny");
    }
    const switchMs = Date.now() - started;
    console.log(`policy apply: both acp-policy replicas decided with the new policy after ${switchMs} ms`);
    expect(switched).toBe(true);
    expect(switchMs).toBeLessThan(1_000);

    const broken = join(dir, "broken.yaml");
    await writeFile(
      broken,
      'version: "10"\nrules:\n  - { name: x, effect: allow, roles: [a], actions: [tools.call] }\n',
    );
    const refused = await loom.cli(["policy", "apply", broken]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/CONFIG_INVALID.*tools/);
    // Something that bypasses the CLI's check and writes garbage is refused by every replica.
    const kv = await new Kvm(await loom.connectAs(NatsUser.POLICY_ADMIN)).open(Buckets.POLICY);
    await kv.put("active", JSON.stringify({ files: [{ name: "x.yaml", text: "rules: [" }], appliedAt: "x" }));
    await new Promise((resolve) => setTimeout(resolve, 300));
    const decisions = await Promise.all(Array.from({ length: 10 }, decideAsAnalyst));
    expect(decisions.every((decision) => decision.policyVersion.startsWith("9@"))).toBe(true);

    const restore = await loom.cli(["policy", "apply", "infra/policies"]);
    expect(restore.code).toBe(0);
  });

  it("e2e - loom audit tail --run shows one run's decisions and executions, no personal data", async () => {
    const run = await loom.cli(["submit", "hello", "--input", '{"contactId":"c-1"}', "--watch", "--json"], {
      token: tokenFor("ann", "analyst"),
    });
    const { runId } = JSON.parse(run.stdout.trim().split("\n").at(-1) ?? "{}");
    const tail = await loom.cli(["audit", "tail", "--run", runId]);
    expect(tail.code).toBe(0);
    const lines = tail.stdout.trim().split("\n");
    expect(lines.every((line) => line.includes(runId))).toBe(true);
    expect(tail.stdout).toMatch(
      /policy\.decision\s+ann\s+tools\.call crm\.get_contact {2}allow by analysts-read-crm/,
    );
    expect(tail.stdout).toMatch(/tool\.execution\s+ann\s+tools\.call crm\.get_contact {2}ok/);
    expect(tail.stdout).not.toContain("ada@example.com");
    const verify = await loom.cli(["audit", "verify"]);
    expect(verify.code).toBe(0);
  });

  it("e2e - loom audit tail --follow prints a new run's records as they are appended", async () => {
    const follower = spawn(
      process.execPath,
      [
        join(REPO_ROOT, "services/cli/bin.ts"),
        // An operator's command: the audit trail is policy-admin's to read.
        "--nats",
        loom.users.urlAs(NatsUser.POLICY_ADMIN),
        "audit",
        "tail",
        "--follow",
        "-n",
        "0",
      ],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    let printed = "";
    follower.stdout.setEncoding("utf8").on("data", (chunk: string) => {
      printed += chunk;
    });
    try {
      await followerListening(follower);
      const run = await loom.cli(["submit", "hello", "--input", '{"contactId":"c-3"}', "--watch", "--json"], {
        token: tokenFor("ann", "analyst"),
      });
      const { runId } = JSON.parse(run.stdout.trim().split("\n").at(-1) ?? "{}");
      const deadline = Date.now() + 10_000;
      while (!/tool\.execution .*crm\.get_contact/.test(printed) && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      expect(printed).toContain(`run ${runId}`);
      expect(printed).toMatch(/policy\.decision\s+ann\s+workflow\.start hello {2}allow/);
      expect(printed).toMatch(/tool\.execution\s+ann\s+tools\.call crm\.get_contact {2}ok/);
    } finally {
      follower.kill("SIGTERM");
    }
  });

  it("e2e - a step decided after the submitter's token expired still runs, on the run's own token", async () => {
    // Long enough for the CLI to start and the run to be admitted on a loaded machine, no longer.
    const expiresAt = Math.floor(Date.now() / 1000) + 6;
    const shortLived = signJwt(validClaims("ann", ["analyst"], { exp: expiresAt }));
    const submitted = await loom.cli(["submit", "test/security/workflows/approve-then-call.yaml", "--json"], {
      token: shortLived,
    });
    const { runId } = JSON.parse(submitted.stdout);
    await sleep(Math.max(0, expiresAt * 1_000 + 1_000 - Date.now()));
    // The submitter's token is dead now: on its own it is refused.
    const explained = await loom.cli(["policy", "explain", "--tool", "time.get_time"], { token: shortLived });
    expect(explained.stderr).toMatch(/error UNAUTHENTICATED: .*expired/);
    const approved = await loom.cli(["runs", "input", runId, "--approve"], {
      token: tokenFor("mia", "manager"),
    });
    expect(approved.code, approved.stderr).toBe(0);
    const js = jetstream(loom.observer);
    const result = await watchRun(runId, followRun(js, runId), () => {});
    expect(result.state).toBe("TASK_STATE_COMPLETED");
  });
});

describe("e2e - development tokens", () => {
  let dataDir: string;
  let loom: Loom;
  beforeAll(async () => {
    dataDir = await mkdtemp(join(tmpdir(), "loom-dev-data-"));
    // Dev mode: no JWKS configured, so acp-policy trusts the key in the data dir (made on first use).
    loom = await startLoom({
      env: { LOOM_AUTH_PUBLIC_KEYS: "", LOOM_AUTH_ISSUER: "loom-dev", LOOM_DATA_DIR: dataDir },
    });
  });
  afterAll(async () => {
    await loom?.[Symbol.asyncDispose]();
    await rm(dataDir, { recursive: true, force: true });
  });

  it("e2e - loom token issue prints a JWT the dev stack accepts, with its region and ttl", async () => {
    const issued = await loom.cli([
      "token",
      "issue",
      "--sub",
      "alice",
      "--role",
      "analyst",
      "--ttl",
      "10m",
      "--region",
      "eu",
      "--data-dir",
      dataDir,
    ]);
    expect(issued.code, issued.stderr).toBe(0);
    const token = issued.stdout.trim();
    const claims = JSON.parse(Buffer.from(token.split(".")[1] ?? "", "base64url").toString());
    expect(claims).toMatchObject({
      sub: "alice",
      roles: ["analyst"],
      region: "eu",
      iss: "loom-dev",
      aud: "loom",
    });
    expect(claims.exp - claims.iat).toBe(600);
    const run = await loom.cli(["submit", "hello", "--input", '{"contactId":"c-2"}', "--watch", "--json"], {
      token,
    });
    expect(run.code, run.stdout).toBe(0);

    const us = await loom.cli([
      "token",
      "issue",
      "--sub",
      "sam",
      "--role",
      "analyst",
      "--region",
      "us",
      "--data-dir",
      dataDir,
    ]);
    const refused = await loom.cli(["submit", "hello", "--input", '{"contactId":"c-2"}', "--watch"], {
      token: us.stdout.trim(),
    });
    expect(refused.code).toBe(2);
    expect(refused.stdout).toContain("eu-data-stays-in-eu");
  });
});
