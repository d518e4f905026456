import { execFile } from "node:child_process";
import { createHmac, generateKeyPairSync, randomUUID } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Role, type Task } from "../../schemas/a2a.ts";
import { type Alert, AlertSchema } from "../../schemas/alert.ts";
import { type AuditRecord, AuditRecordSchema } from "../../schemas/audit.ts";
import {
  AgentTaskContract,
  PolicyDecideContract,
  PolicyExplainContract,
  ToolStatsContract,
} from "../../schemas/contracts.ts";
import { ErrorCode } from "../../schemas/errors.ts";
import {
  agentTasksSubject,
  auditSubject,
  Headers,
  MCP_WORKER_AGENT,
  Streams,
  Subjects,
} from "../../schemas/subjects.ts";
import { type Stack, waitUntilReady } from "../../services/cli/stack.ts";
import { type LoomError, request } from "../../services/kit/index.ts";
import { ensureStream, StreamDefinitions } from "../../services/kit/jetstream.ts";
import { AttackClass, attack, control } from "../helpers/attack-tally.ts";
import { type Loom, NatsUser, REPO_ROOT, startLoom } from "../helpers/loom.ts";
import { connectTo } from "../helpers/nats-server.ts";
import { type NatsUsersServer, serviceLogs, startNatsWithUsers } from "../helpers/nats-users.ts";
import { signJwt, TEST_KID, TEST_PUBLIC_JWK, tokenFor, validClaims } from "../helpers/tokens.ts";

const run = promisify(execFile);

const b64 = (value: unknown) => Buffer.from(JSON.stringify(value)).toString("base64url");

async function decide(
  nc: NatsConnection,
  token: string | undefined,
  tool = "crm.get_contact",
  args: Record<string, unknown> = { id: "c-1" },
) {
  return request(
    nc,
    Subjects.POLICY_DECIDE,
    PolicyDecideContract,
    {
      action: "tools.call",
      resource: { tool },
      arguments: args,
      runId: "attack-run",
      stepId: "s1",
      attempt: 1,
    },
    {
      timeoutMs: 5_000,
      headers: { [Headers.AUTHORIZATION]: token === undefined ? undefined : `Bearer ${token}` },
    },
  );
}

/** A task straight to the worker, as anyone on the bus could send it. */
async function sendTask(
  nc: NatsConnection,
  call: { server: string; tool: string; arguments: Record<string, unknown> },
  metadata: Record<string, unknown>,
): Promise<Task | LoomError> {
  return request(
    nc,
    agentTasksSubject(MCP_WORKER_AGENT),
    AgentTaskContract,
    {
      messageId: randomUUID(),
      role: Role.USER,
      taskId: randomUUID(),
      contextId: "attack",
      parts: [{ data: call }],
      metadata: { runId: "attack-run", stepId: "s1", ...metadata },
    },
    { timeoutMs: 10_000 },
  ).catch((error: LoomError) => error);
}

const isRefusal = (result: Task | LoomError, code: string) => "code" in result && result.code === code;

async function auditRecords(nc: NatsConnection): Promise<AuditRecord[]> {
  const jsm = await jetstreamManager(nc);
  const { state } = await jsm.streams.info(Streams.AUDIT);
  const records: AuditRecord[] = [];
  for (let seq = 1; seq <= state.last_seq; seq++) {
    const message = await jsm.streams.getMessage(Streams.AUDIT, { seq });
    const parsed = AuditRecordSchema.safeParse(message?.json());
    if (parsed.success) records.push(parsed.data);
  }
  return records;
}

describe("security - token and bypass attacks against a running stack", () => {
  let loom: Loom;
  /** Asks policy: what a compromised orchestrator, or its user, can do. */
  let orchestrator: NatsConnection;
  /** Sends the worker tasks: what a compromised acp-policy's user (which forwards granted tasks) can do. */
  let forwarder: NatsConnection;
  beforeAll(async () => {
    loom = await startLoom({ env: { LOOM_GRANT_TTL: "1s" } });
    orchestrator = await loom.connectAs(NatsUser.ORCHESTRATOR);
    forwarder = await loom.connectAs(NatsUser.ACP_POLICY);
  });
  afterAll(async () => {
    await loom?.[Symbol.asyncDispose]();
  });

  const now = () => Math.floor(Date.now() / 1000);
  const tokenAttacks: Array<[string, () => string | undefined]> = [
    ["missing", () => undefined],
    ["expired", () => signJwt(validClaims("mallory", ["admin"], { exp: now() - 600, iat: now() - 4000 }))],
    ["not yet valid", () => signJwt(validClaims("mallory", ["admin"], { nbf: now() + 600 }))],
    ["wrong issuer", () => signJwt(validClaims("mallory", ["admin"], { iss: "https://evil.example" }))],
    ["wrong audience", () => signJwt(validClaims("mallory", ["admin"], { aud: "someone-else" }))],
    ["alg none", () => `${b64({ alg: "none", typ: "JWT" })}.${b64(validClaims("mallory", ["admin"]))}.`],
    [
      "HS256 signed with the public key",
      () => {
        const input = `${b64({ alg: "HS256", typ: "JWT", kid: TEST_KID })}.${b64(validClaims("mallory", ["admin"]))}`;
        const secret = JSON.stringify(TEST_PUBLIC_JWK);
        return `${input}.${createHmac("sha256", secret).update(input).digest("base64url")}`;
      },
    ],
    [
      "tampered payload",
      () => {
        const [header, , signature] = tokenFor("ann", "viewer").split(".");
        return `${header}.${b64(validClaims("ann", ["admin"]))}.${signature}`;
      },
    ],
    ["unknown kid", () => signJwt(validClaims("mallory", ["admin"]), { header: { kid: "rotated-away" } })],
    [
      "forged role claim signed by another key",
      () => signJwt(validClaims("mallory", ["admin"]), { key: generateKeyPairSync("ed25519").privateKey }),
    ],
  ];

  it.each(tokenAttacks)("security - a %s token is refused as unauthenticated", async (_name, make) => {
    await attack(AttackClass.TOKENS, `a ${_name} token is refused as unauthenticated`, async () => {
      const decision = await decide(orchestrator, make());
      return (
        decision.effect === "deny" && decision.rule === "unauthenticated" && decision.grant === undefined
      );
    });
  });

  /** The operator-facing reads a submitter may ask for: each answers only a caller policy authenticates. */
  const askExplain = (nc: NatsConnection, token: string | undefined) =>
    request(
      nc,
      Subjects.POLICY_EXPLAIN,
      PolicyExplainContract,
      { action: "tools.call", resource: { tool: "crm.delete_record" }, arguments: { id: "c-1" } },
      { timeoutMs: 5_000, headers: { [Headers.AUTHORIZATION]: token && `Bearer ${token}` } },
    );
  const askStats = (nc: NatsConnection, token: string | undefined) =>
    request(
      nc,
      Subjects.TOOLS_STATS,
      ToolStatsContract,
      { sinceMs: 3_600_000 },
      { timeoutMs: 10_000, headers: { [Headers.AUTHORIZATION]: token && `Bearer ${token}` } },
    );
  const unauthenticated = (ask: Promise<unknown>) =>
    ask.then(
      () => false,
      (error: LoomError) => error.code === ErrorCode.UNAUTHENTICATED,
    );

  it.each(tokenAttacks)(
    "security - a %s token gets no policy explanation and no tool statistics",
    async (name, make) => {
      const submitter = await loom.connectAs(NatsUser.SUBMITTER);
      await attack(AttackClass.TOKENS, `loom policy explain with a ${name} token`, () =>
        unauthenticated(askExplain(submitter, make())),
      );
      await attack(AttackClass.TOKENS, `loom tools stats with a ${name} token`, () =>
        unauthenticated(askStats(submitter, make())),
      );
    },
  );

  it("security - control: a valid token gets its own explanation and the statistics", async () => {
    const submitter = await loom.connectAs(NatsUser.SUBMITTER);
    await control("policy explain for a valid viewer's token", async () => {
      const explanation = await askExplain(submitter, tokenFor("vic", "viewer"));
      return explanation.decision.principal.id === "vic" && explanation.rules.length > 0;
    });
    await control("tools stats for a valid viewer's token", async () => {
      const stats = await askStats(submitter, tokenFor("vic", "viewer"));
      return Array.isArray(stats.rows);
    });
    await control("loom policy explain and loom tools stats through the CLI", async () => {
      const explained = await loom.cli(["policy", "explain", "--tool", "time.get_time"], {
        token: tokenFor("vic", "viewer"),
      });
      const stats = await loom.cli(["tools", "stats"], { token: tokenFor("vic", "viewer") });
      const refused = await loom.cli(["tools", "stats"]);
      return (
        explained.stdout.includes("principal  vic") &&
        stats.code === 0 &&
        refused.code === 2 &&
        refused.stderr.includes("UNAUTHENTICATED")
      );
    });
  });

  it("security - a forged-role token cannot start a run through the CLI either", async () => {
    await attack(
      AttackClass.TOKENS,
      `a forged-role token cannot start a run through the CLI either`,
      async () => {
        const forged = signJwt(validClaims("mallory", ["admin"]), {
          key: generateKeyPairSync("ed25519").privateKey,
        });
        const result = await loom.cli(["submit", "hello", "--input", '{"contactId":"c-1"}', "--watch"], {
          token: forged,
        });
        // The run is rejected, and the forged token cannot even follow it (reads are verified too);
        // a refusal exits 2.
        return result.code === 2 && /UNAUTHENTICATED/.test(result.stderr) && !/completed/.test(result.stdout);
      },
    );
  });

  it("security - a task sent straight to the worker without a grant is refused and audited", async () => {
    await attack(
      AttackClass.BYPASS,
      `a task sent straight to the worker without a grant is refused and audited`,
      async () => {
        const result = await sendTask(
          forwarder,
          { server: "crm", tool: "get_contact", arguments: { id: "c-1" } },
          {},
        );
        return isRefusal(result, ErrorCode.GRANT_REFUSED);
      },
    );
    const refusals = (await auditRecords(loom.observer)).filter((record) => record.kind === "grant.refused");
    expect(refusals.some((record) => record.resource === "crm.get_contact")).toBe(true);
  });

  it("security - a grant replayed with other arguments is refused", async () => {
    const { grant } = await decide(orchestrator, tokenFor("ann", "analyst"), "crm.get_contact", {
      id: "c-1",
    });
    expect(grant).toBeDefined();
    await attack(AttackClass.GRANT_REUSE, `a grant replayed with other arguments is refused`, async () => {
      const result = await sendTask(
        forwarder,
        { server: "crm", tool: "get_contact", arguments: { id: "c-2" } },
        { grant },
      );
      return (
        isRefusal(result, ErrorCode.GRANT_REFUSED) && /other arguments/.test((result as LoomError).message)
      );
    });
  });

  it("security - a grant for one tool does not open another", async () => {
    const { grant } = await decide(orchestrator, tokenFor("ann", "analyst"), "time.get_time", {
      timezone: "UTC",
    });
    await attack(AttackClass.BYPASS, `a grant for one tool does not open another`, async () => {
      const result = await sendTask(
        forwarder,
        { server: "crm", tool: "delete_record", arguments: { timezone: "UTC" } },
        { grant },
      );
      return isRefusal(result, ErrorCode.GRANT_REFUSED);
    });
  });

  it("security - a grant signed by a key acp-policy never published is refused", async () => {
    await attack(
      AttackClass.BYPASS,
      `a grant signed by a key acp-policy never published is refused`,
      async () => {
        const forged = signJwt(
          { iss: "acp-policy", aud: "mcp-worker", sub: "mallory", exp: Math.floor(Date.now() / 1000) + 60 },
          { header: { typ: "loom-grant+jwt", kid: "attacker-key" } },
        );
        const result = await sendTask(
          forwarder,
          { server: "crm", tool: "get_contact", arguments: { id: "c-1" } },
          { grant: forged },
        );
        return isRefusal(result, ErrorCode.GRANT_REFUSED);
      },
    );
  });

  it("security - an expired grant is refused, while the same grant used in time works", async () => {
    const call = { server: "time", tool: "get_time", arguments: { timezone: "UTC" } };
    const fresh = await decide(orchestrator, tokenFor("ann", "analyst"), "time.get_time", {
      timezone: "UTC",
    });
    const ok = await sendTask(forwarder, call, { grant: fresh.grant });
    expect("status" in ok && ok.status.state).toBe("TASK_STATE_COMPLETED");

    const stale = await decide(orchestrator, tokenFor("ann", "analyst"), "time.get_time", {
      timezone: "UTC",
    });
    // Grants here live 1 s; the worker allows 5 s of clock skew.
    await new Promise((resolve) => setTimeout(resolve, 7_000));
    await attack(
      AttackClass.BYPASS,
      `an expired grant is refused, while the same grant used in time works`,
      async () => {
        const result = await sendTask(forwarder, { ...call }, { grant: stale.grant, stepId: "s2" });
        return isRefusal(result, ErrorCode.GRANT_REFUSED) && /expired/.test((result as LoomError).message);
      },
    );
  });

  it("security - a run token works only for its own run's steps", async () => {
    const started = await request(
      orchestrator,
      Subjects.POLICY_DECIDE,
      PolicyDecideContract,
      {
        action: "workflow.start",
        resource: { workflow: "hello" },
        runId: "run-a",
        runWorkflow: { id: "hello", version: 1 },
      },
      { timeoutMs: 5_000, headers: { [Headers.AUTHORIZATION]: `Bearer ${tokenFor("ann", "analyst")}` } },
    );
    expect(started.runToken).toBeDefined();
    const forRun = (runId: string) =>
      request(
        orchestrator,
        Subjects.POLICY_DECIDE_RUN,
        PolicyDecideContract,
        {
          action: "tools.call",
          resource: { tool: "time.get_time" },
          arguments: {},
          runId,
          stepId: "now",
          runWorkflow: { id: "hello", version: 1 },
        },
        { timeoutMs: 5_000, headers: { [Headers.AUTHORIZATION]: `Bearer ${started.runToken}` } },
      );
    expect((await forRun("run-a")).effect).toBe("allow");
    await attack(AttackClass.RUN_TOKENS, `a run token works only for its own run's steps`, async () => {
      const other = await forRun("run-b");
      return other.effect === "deny" && other.rule === "unauthenticated" && /another run/.test(other.reason);
    });
  });

  it("security - only admin may call delete_record: an analyst is refused by rule only-admins-delete", async () => {
    await attack(
      AttackClass.BYPASS,
      `only admin may call delete_record: an analyst is refused by rule only-admins-delete`,
      async () => {
        const decision = await decide(orchestrator, tokenFor("ann", "analyst"), "crm.delete_record", {
          id: "c-1",
        });
        return decision.effect === "deny" && decision.rule === "only-admins-delete";
      },
    );
    const admin = await decide(orchestrator, tokenFor("root", "admin"), "crm.delete_record", { id: "c-1" });
    expect(admin).toMatchObject({ effect: "allow", rule: "admins-call-anything" });
  });

  it("security - EU data stays in the EU: a caller in the US is refused crm by rule eu-data-stays-in-eu", async () => {
    await attack(
      AttackClass.RESOURCE_FACTS,
      `EU data stays in the EU: a caller in the US is refused crm by rule eu-data-stays-in-eu`,
      async () => {
        const us = signJwt(validClaims("sam", ["analyst"], { region: "us" }));
        const decision = await decide(orchestrator, us);
        return decision.effect === "deny" && decision.rule === "eu-data-stays-in-eu";
      },
    );
  });

  it("security - a first call of a tool and a burst of calls raise alerts on loom.v1.alerts", async () => {
    const alerts: Alert[] = [];
    const subscription = loom.observer.subscribe(Subjects.ALERTS, {
      callback: (_error, message) => {
        alerts.push(AlertSchema.parse(message.json()));
      },
    });
    await loom.observer.flush();
    const token = tokenFor("burst-bot", "analyst");
    for (let i = 0; i < 25; i++) await decide(orchestrator, token, "time.get_time", { timezone: "UTC" });
    await decide(orchestrator, token, "crm.list_contacts", {});
    await new Promise((resolve) => setTimeout(resolve, 200));
    subscription.unsubscribe();
    const mine = alerts.filter((alert) => alert.principal === "burst-bot");
    expect(mine.filter((alert) => alert.kind === "new-tool").map((alert) => alert.tool)).toEqual([
      "time.get_time",
      "crm.list_contacts",
    ]);
    expect(mine.filter((alert) => alert.kind === "burst")).toHaveLength(1);
  });

  it("security - a forged audit record breaks the chain and loom audit verify names it", async () => {
    const before = await loom.cli(["audit", "verify"]);
    expect(before.code).toBe(0);
    expect(before.stdout).toMatch(/audit intact: \d+ records from \d+ writers/);
    const last = (await auditRecords(loom.observer)).findLast((record) => record.service === "acp-policy");
    if (last === undefined) throw new Error("acp-policy wrote no audit record");
    const forged = { ...last, id: randomUUID(), seq: last.seq + 1, effect: "allow", principal: "mallory" };
    // Only acp-policy's user may append in its name: the forger is an insider with that user.
    await jetstream(await loom.connectAs(NatsUser.ACP_POLICY)).publish(
      auditSubject("acp-policy", last.writer),
      JSON.stringify(forged),
    );
    await attack(
      AttackClass.AUDIT_FORGERY,
      `a forged audit record breaks the chain and loom audit verify names it`,
      async () => {
        const after = await loom.cli(["audit", "verify"]);
        return (
          after.code === 1 && after.stdout.includes(`acp-policy/${last.writer}: BROKEN at seq ${forged.seq}`)
        );
      },
    );
  });
});

describe("security - NATS users and subject permissions (infra/nats/nats-server.conf)", () => {
  let nats: NatsUsersServer;
  let orchestrator: NatsConnection;
  let worker: NatsConnection;
  let submitter: NatsConnection;
  beforeAll(async () => {
    nats = await startNatsWithUsers();
    orchestrator = await nats.connectAs("orchestrator");
    worker = await nats.connectAs("mcp-worker");
    submitter = await nats.connectAs("submitter");
    // Each stream made by a user whose service creates it: the orchestrator may not create LOOM_AUDIT.
    await ensureStream(await jetstreamManager(orchestrator), StreamDefinitions.runs, 1);
    await ensureStream(await jetstreamManager(worker), StreamDefinitions.audit, 1);
  });
  afterAll(async () => {
    await Promise.all([orchestrator?.close(), worker?.close(), submitter?.close()]);
    await nats?.[Symbol.asyncDispose]();
  });

  it("nats - the whole stack runs a workflow with a user per service, submitted by the submitter user", async () => {
    const logDir = await mkdtemp(join(tmpdir(), "loom-nats-users-"));
    const stacks: Stack[] = [];
    try {
      stacks.push(
        ...(await nats.startServices(["acp-policy", "mcp-worker", "llm-agent", "orchestrator"], { logDir })),
      );
      await waitUntilReady(orchestrator, { tools: ["time.get_time", "crm.get_contact"], timeoutMs: 30_000 });
      const { stdout } = await run(
        process.execPath,
        [
          join(REPO_ROOT, "services/cli/bin.ts"),
          ...["--nats", nats.urlAs("submitter")],
          ...["--token", tokenFor("ann", "analyst")],
          ...["submit", "hello", "--input", '{"contactId":"c-1"}', "--watch", "--json"],
        ],
        { timeout: 30_000 },
      );
      expect(JSON.parse(stdout.trim().split("\n").at(-1) ?? "{}")).toMatchObject({ state: "completed" });
      expect(await serviceLogs(logDir)).not.toMatch(/Permissions Violation/i);
    } finally {
      await Promise.all(stacks.map((stack) => stack.stop()));
      await rm(logDir, { recursive: true, force: true });
    }
  });

  it("nats - a wrong password is refused at connect", async () => {
    await attack(AttackClass.TRUSTED_BUS, `a wrong password is refused at connect`, async () =>
      connectTo(nats.server.url, { user: "orchestrator", pass: "guess", maxReconnectAttempts: 0 }).then(
        async (nc) => {
          await nc.close();
          return false;
        },
        () => true,
      ),
    );
  });

  it("nats - a submitter may submit a run (the PubAck proves it is stored)", async () => {
    const ack = await jetstream(submitter).publish(Subjects.RUNS_SUBMIT, "{}", { msgID: randomUUID() });
    expect(ack.stream).toBe(Streams.RUNS);
  });

  it("nats - a submitter publishing a task to an agent subject is refused and no worker sees it", async () => {
    const seen: unknown[] = [];
    const subscription = worker.subscribe(agentTasksSubject(MCP_WORKER_AGENT), {
      callback: (_error, message) => {
        seen.push(message);
      },
    });
    await worker.flush();
    await attack(
      AttackClass.TRUSTED_BUS,
      `a submitter publishing a task to an agent subject is refused and no worker sees it`,
      async () => {
        const rejected = await submitter
          .request(agentTasksSubject(MCP_WORKER_AGENT), "{}", { timeout: 1_000 })
          .then(
            () => false,
            () => true,
          );
        await new Promise((resolve) => setTimeout(resolve, 300));
        return rejected && seen.length === 0;
      },
    );
    subscription.unsubscribe();
  });

  it("nats - a submitter cannot append to the audit stream", async () => {
    const before = (await jetstreamManager(orchestrator).then((jsm) => jsm.streams.info(Streams.AUDIT))).state
      .messages;
    await attack(AttackClass.AUDIT_FORGERY, `a submitter cannot append to the audit stream`, async () => {
      const rejected = await jetstream(submitter, { timeout: 1_000 })
        .publish(auditSubject("acp-policy", "w"), "{}")
        .then(
          () => false,
          () => true,
        );
      const after = (await jetstreamManager(orchestrator).then((jsm) => jsm.streams.info(Streams.AUDIT)))
        .state.messages;
      return rejected && after === before;
    });
  });

  it("nats - a submitter cannot write the active policy", async () => {
    await attack(AttackClass.TRUSTED_BUS, `a submitter cannot write the active policy`, async () =>
      submitter.request("$KV.loom_policy.active", "{}", { timeout: 1_000 }).then(
        () => false,
        () => true,
      ),
    );
  });
});
