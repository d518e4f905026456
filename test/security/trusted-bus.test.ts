import { type ChildProcess, execFile, spawn } from "node:child_process";
import { generateKeyPairSync, randomUUID } from "node:crypto";
import { once } from "node:events";
import { join } from "node:path";
import { jetstream, jetstreamManager, type StreamConfig } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/transport-node";
import { calculateJwkThumbprint, type JWK, SignJWT } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TaskState } from "../../schemas/a2a.ts";
import { AgentTaskContract, PolicyTaskContract, WorkflowApplyContract } from "../../schemas/contracts.ts";
import { ErrorCode } from "../../schemas/errors.ts";
import { toolTaskInboxOf } from "../../schemas/nats-users.ts";
import { GRANT_AUDIENCE, GRANT_ISSUER, GRANT_TYPE } from "../../schemas/policy.ts";
import {
  agentTasksSubject,
  auditSubject,
  Buckets,
  Headers,
  MCP_WORKER_AGENT,
  runDelegatedCancelSubject,
  runEventsSubject,
  Streams,
  Subjects,
  spansSubject,
} from "../../schemas/subjects.ts";
import { waitUntilReady } from "../../services/cli/stack.ts";
import { digestOf } from "../../services/kit/digest.ts";
import {
  isLoomStream,
  type LoomError,
  MuxedRequests,
  request,
  sendToolTask,
} from "../../services/kit/index.ts";
import { AttackClass, attack, control } from "../helpers/attack-tally.ts";
import { type Loom, NatsUser, REPO_ROOT, startLoom, tokenFor } from "../helpers/loom.ts";
import { connectTo } from "../helpers/nats-server.ts";
import { OPERATOR, permissionViolations } from "../helpers/nats-users.ts";

/**
 * The bus as `npm start` runs it (startLoom: infra/nats/nats-server.conf, each service its own
 * user, the CLI as submitter or policy-admin): every user that should not write the grant keys,
 * the policy, the workflow registry, a run's events, an agent's tasks or another's audit records,
 * nor read another's private buckets, is refused; the rightful user, beside it, is not.
 */
describe("security - trusted bus: the NATS users of npm start", () => {
  let loom: Loom;
  const as = {} as Record<NatsUser, NatsConnection>;
  const analyst = tokenFor("ann", "analyst");
  let runId: string;
  let stepKey = "";
  const contextId = `ctx-${randomUUID()}`;

  beforeAll(async () => {
    loom = await startLoom();
    for (const user of Object.values(NatsUser)) as[user] = await loom.connectAs(user);
    const run = await loom.cli(
      ["submit", "hello", "--input", '{"contactId":"c-1"}', "--context", contextId, "--watch", "--json"],
      { token: analyst },
    );
    expect(run.code, run.stderr).toBe(0);
    runId = JSON.parse(run.stdout.trim().split("\n").at(-1) ?? "{}").runId;
    // The worker's key for one of the run's steps, whatever its shape.
    for await (const key of await (await new Kvm(loom.observer).open(Buckets.STEPS)).keys()) {
      if (key.includes(runId)) stepKey = key;
    }
  });
  afterAll(async () => {
    await loom?.[Symbol.asyncDispose]();
  });

  /** A JetStream publish the user is refused: no PubAck comes (nats-server drops it as a violation). */
  const publishRefused = (user: NatsUser, subject: string, payload: string) =>
    jetstream(as[user], { timeout: 1_500 })
      .publish(subject, payload)
      .then(
        () => false,
        () => true,
      );

  /** A read of one key of a bucket by both of KV's read paths (stream message get, direct get). */
  async function readRefused(user: NatsUser, bucket: string, key: string): Promise<boolean> {
    const viaStream = await new Kvm(jetstream(as[user], { timeout: 1_500 }))
      .open(bucket)
      .then((kv) => kv.get(key))
      .then(
        (entry) => entry === null,
        () => true,
      );
    const viaDirect = await as[user]
      .request(`$JS.API.DIRECT.GET.KV_${bucket}.$KV.${bucket}.${key}`, "", { timeout: 1_500 })
      .then(
        (reply) => reply.data.length === 0,
        () => true,
      );
    return viaStream && viaDirect;
  }

  const keyExists = async (bucket: string, key: string) =>
    (await (await new Kvm(loom.observer).open(bucket)).get(key))?.operation === "PUT";

  describe("grant keys", () => {
    /** A signing key of the attacker's, its public half as acp-policy publishes its own. */
    async function attackerKey() {
      const { privateKey, publicKey } = generateKeyPairSync("ed25519");
      const publicJwk = publicKey.export({ format: "jwk" }) as JWK;
      const kid = await calculateJwkThumbprint(publicJwk);
      return { privateKey, kid, jwk: JSON.stringify({ ...publicJwk, kid, alg: "EdDSA", use: "sig" }) };
    }
    const call = { server: "crm", tool: "delete_record", arguments: { id: "c-1" } };

    /** A grant for crm.delete_record in the shape acp-policy signs, signed with the attacker's key. */
    async function mint(key: Awaited<ReturnType<typeof attackerKey>>, stepId: string) {
      return new SignJWT({
        run: "bus-run",
        step: stepId,
        action: "tools.call",
        tool: "crm.delete_record",
        args: digestOf(call.arguments),
        obligations: { maskFields: [], maskPii: [], maskPatterns: [] },
        attempt: 1,
        rule: "admins-delete",
        roles: ["admin"],
        attributes: {},
      })
        .setProtectedHeader({ alg: "EdDSA", typ: GRANT_TYPE, kid: key.kid })
        .setIssuer(GRANT_ISSUER)
        .setAudience(GRANT_AUDIENCE)
        .setSubject("mallory")
        .setJti(randomUUID())
        .setIssuedAt()
        .setExpirationTime("60s")
        .sign(key.privateKey);
    }

    /** The minted grant sent to the worker as acp-policy forwards tasks: true when the worker ran it. */
    async function workerAccepts(grant: string, stepId: string): Promise<boolean> {
      const result = await request(
        as[NatsUser.ACP_POLICY],
        agentTasksSubject(MCP_WORKER_AGENT),
        AgentTaskContract,
        {
          messageId: randomUUID(),
          role: "ROLE_USER",
          taskId: randomUUID(),
          contextId: "bus",
          parts: [{ data: call }],
          metadata: { runId: "bus-run", stepId, attempt: 1, grant },
        },
        { timeoutMs: 10_000 },
      ).then(
        () => "ran",
        (error: { code?: string }) => error.code ?? "failed",
      );
      if (result !== "ran" && result !== ErrorCode.GRANT_REFUSED)
        throw new Error(`worker answered ${result}`);
      return result === "ran";
    }

    it.each([NatsUser.SUBMITTER, NatsUser.ORCHESTRATOR, NatsUser.MCP_WORKER, NatsUser.LLM_AGENT])(
      "bus - %s cannot put a key into loom_grant_keys, and the grant it mints is refused",
      async (user) => {
        const key = await attackerKey();
        await attack(
          AttackClass.TRUSTED_BUS,
          `${user} writes a signing key into loom_grant_keys and mints a grant the worker accepts`,
          async () => {
            const refused = await publishRefused(user, `$KV.${Buckets.GRANT_KEYS}.${key.kid}`, key.jwk);
            const minted = await mint(key, `s-${user}`);
            return (
              refused &&
              !(await keyExists(Buckets.GRANT_KEYS, key.kid)) &&
              !(await workerAccepts(minted, `s-${user}`))
            );
          },
        );
      },
    );

    it("bus - control: acp-policy's user publishes a key, and a grant signed with it runs", async () => {
      const key = await attackerKey();
      const kv = await new Kvm(as[NatsUser.ACP_POLICY]).open(Buckets.GRANT_KEYS);
      try {
        await control("acp-policy's user writes loom_grant_keys, the worker trusts the key", async () => {
          await kv.put(key.kid, key.jwk);
          return workerAccepts(await mint(key, "s-control"), "s-control");
        });
      } finally {
        await kv.purge(key.kid);
      }
    });
  });

  describe("policy, workflows", () => {
    it.each([
      NatsUser.SUBMITTER,
      NatsUser.ORCHESTRATOR,
      NatsUser.MCP_WORKER,
      NatsUser.LLM_AGENT,
      NatsUser.ACP_POLICY,
    ])("bus - %s cannot write the active policy", async (user) => {
      const before = await (await new Kvm(loom.observer).open(Buckets.POLICY)).get("active");
      const allowAll = JSON.stringify({
        files: [
          {
            name: "open.yaml",
            text: 'version: "1"\nrules:\n  - { name: open, effect: allow, roles: ["*"], actions: ["*"] }\n',
          },
        ],
        appliedAt: new Date().toISOString(),
      });
      await attack(AttackClass.TRUSTED_BUS, `${user} writes the active policy in loom_policy`, async () => {
        const refused = await publishRefused(user, `$KV.${Buckets.POLICY}.active`, allowAll);
        const after = await (await new Kvm(loom.observer).open(Buckets.POLICY)).get("active");
        return refused && after?.revision === before?.revision;
      });
    });

    it("bus - control: loom policy apply (as policy-admin) makes a new policy revision", async () => {
      await control("loom policy apply writes loom_policy", async () => {
        const applied = await loom.cli(["policy", "apply", "infra/policies"]);
        return applied.code === 0 && /applied policy .* as revision \d+/.test(applied.stdout);
      });
    });

    const evil = {
      id: "evil",
      version: 1,
      steps: [{ id: "wipe", call: "crm.delete_record", with: { id: "c-1" } }],
    };

    it.each([NatsUser.SUBMITTER, NatsUser.MCP_WORKER, NatsUser.LLM_AGENT, NatsUser.ACP_POLICY])(
      "bus - %s cannot register a workflow version in loom_workflows",
      async (user) => {
        await attack(
          AttackClass.TRUSTED_BUS,
          `${user} registers a workflow version in loom_workflows`,
          async () => {
            const refused = await publishRefused(
              user,
              `$KV.${Buckets.WORKFLOWS}.evil.1`,
              JSON.stringify(evil),
            );
            return refused && !(await keyExists(Buckets.WORKFLOWS, "evil.1"));
          },
        );
      },
    );

    it.each([
      ["no token", undefined],
      ["an analyst's token", "analyst"],
    ] as const)(
      "bus - the submitter asking the orchestrator to register a workflow with %s is refused by policy",
      async (_what, role) => {
        await attack(
          AttackClass.TRUSTED_BUS,
          `submitter sends loom.v1.workflows.apply with ${_what}`,
          async () => {
            const token = role === undefined ? undefined : tokenFor("ann", role);
            const error = await request(
              as[NatsUser.SUBMITTER],
              Subjects.WORKFLOWS_APPLY,
              WorkflowApplyContract,
              { definition: evil },
              { timeoutMs: 10_000, headers: { [Headers.AUTHORIZATION]: token && `Bearer ${token}` } },
            ).then(
              () => undefined,
              (refusal: LoomError) => refusal,
            );
            const refusedCode = role === undefined ? ErrorCode.UNAUTHENTICATED : ErrorCode.POLICY_DENIED;
            return error?.code === refusedCode && !(await keyExists(Buckets.WORKFLOWS, "evil.1"));
          },
        );
      },
    );

    it("bus - control: an admin's loom workflow apply registers a version", async () => {
      await control("loom workflow apply (as an admin) registers a version", async () => {
        const applied = await loom.cli(["workflow", "apply", join(REPO_ROOT, "workflows/remember.yaml")], {
          token: tokenFor("root", "admin"),
        });
        return applied.code === 0;
      });
    });
  });

  describe("run events", () => {
    it("bus - a forged 'completed' event reaches no watcher: loom submit --watch sees the run canceled", async () => {
      const watcher: ChildProcess = spawn(
        process.execPath,
        [
          join(REPO_ROOT, "services/cli/bin.ts"),
          ...["--nats", loom.nats.url, "--token", analyst],
          ...["submit", "test/security/workflows/approve-then-call.yaml", "--watch", "--json"],
        ],
        { cwd: REPO_ROOT, env: { ...process.env, LOOM_TOKEN: "", LOOM_DATA_DIR: loom.users.dataDir } },
      );
      let stdout = "";
      watcher.stdout?.setEncoding("utf8").on("data", (chunk: string) => {
        stdout += chunk;
      });
      const exited = once(watcher, "exit");
      const waiting = await nextRunWaiting();
      for (const user of [NatsUser.SUBMITTER, NatsUser.MCP_WORKER, NatsUser.LLM_AGENT, NatsUser.ACP_POLICY]) {
        const forged = {
          statusUpdate: {
            taskId: waiting,
            contextId: waiting,
            status: { state: TaskState.COMPLETED, timestamp: new Date().toISOString() },
            metadata: { output: { forgedBy: user } },
          },
        };
        await attack(AttackClass.TRUSTED_BUS, `${user} publishes a forged completed event for a run`, () =>
          publishRefused(user, runEventsSubject(waiting), JSON.stringify(forged)),
        );
      }
      const canceled = await loom.cli(["runs", "cancel", waiting], { token: analyst });
      expect(canceled.code, canceled.stderr).toBe(0);
      await exited;
      const summary = JSON.parse(stdout.trim().split("\n").at(-1) ?? "{}");
      expect(summary.state).toBe("canceled");
      expect(stdout).not.toContain("forgedBy");
      await control("the orchestrator's user publishes run events", async () => {
        const ack = await jetstream(as[NatsUser.ORCHESTRATOR]).publish(
          runEventsSubject(`control-${randomUUID()}`),
          "{}",
        );
        return ack.stream === Streams.EVENTS;
      });
    });

    /** The id of the next run that waits for input, from the events (as the observer sees them). */
    function nextRunWaiting(): Promise<string> {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error("no run waited for input")), 20_000);
        const subscription = loom.observer.subscribe(Subjects.RUN_EVENTS_ALL, {
          callback: (_error, message) => {
            const event = message.json<{ statusUpdate?: { taskId: string; status: { state: string } } }>();
            if (event.statusUpdate?.status.state === TaskState.INPUT_REQUIRED) {
              clearTimeout(timer);
              subscription.unsubscribe();
              resolve(event.statusUpdate.taskId);
            }
          },
        });
      });
    }
  });

  describe("delegated cancels", () => {
    it.each([NatsUser.SUBMITTER, NatsUser.MCP_WORKER, NatsUser.LLM_AGENT, NatsUser.ACP_POLICY])(
      "bus - %s cannot cancel a run as its delegating run (loom.v1.runs.<id>.cancel.delegated)",
      async (user) => {
        await attack(AttackClass.TRUSTED_BUS, `${user} sends a delegated cancel for a run`, async () => {
          const nc = await loom.connectAs(user);
          const violations = permissionViolations(nc);
          const subject = runDelegatedCancelSubject(runId);
          const answered = await nc.request(subject, "{}", { timeout: 1_500 }).then(
            () => true,
            () => false,
          );
          return !answered && (await violations()).includes(`publish to ${subject}`);
        });
      },
    );

    it("bus - control: the orchestrator's user is answered on the delegated cancel subject", async () => {
      await control("a delegated cancel of a run that ended says so", async () => {
        const reply = await as[NatsUser.ORCHESTRATOR].request(runDelegatedCancelSubject(runId), "{}", {
          timeout: 10_000,
        });
        return reply.string().includes(ErrorCode.RUN_NOT_WAITING);
      });
    });
  });

  describe("agent tasks and audit", () => {
    it.each([
      NatsUser.SUBMITTER,
      NatsUser.MCP_WORKER,
      NatsUser.LLM_AGENT,
      NatsUser.ORCHESTRATOR,
      NatsUser.POLICY_ADMIN,
    ])("bus - %s cannot send the mcp-worker a task, which no worker sees", async (user) => {
      const messageId = randomUUID();
      let seen = 0;
      const watching = loom.observer.subscribe(agentTasksSubject(MCP_WORKER_AGENT), {
        callback: (_error, message) => {
          if (message.string().includes(messageId)) seen += 1;
        },
      });
      await loom.observer.flush();
      await attack(
        AttackClass.TRUSTED_BUS,
        `${user} publishes a task to loom.v1.agents.mcp-worker.tasks`,
        async () => {
          const refused = await as[user]
            .request(agentTasksSubject(MCP_WORKER_AGENT), JSON.stringify({ messageId }), { timeout: 1_500 })
            .then(
              () => false,
              () => true,
            );
          await loom.observer.flush();
          return refused && seen === 0;
        },
      );
      watching.unsubscribe();
    });

    it("bus - control: acp-policy's user reaches the worker (which answers without a grant: refused)", async () => {
      await control("acp-policy's user sends the worker a task", async () =>
        request(
          as[NatsUser.ACP_POLICY],
          agentTasksSubject(MCP_WORKER_AGENT),
          AgentTaskContract,
          {
            messageId: randomUUID(),
            role: "ROLE_USER",
            parts: [{ data: { server: "time", tool: "get_time", arguments: {} } }],
          },
          { timeoutMs: 10_000 },
        ).then(
          () => false,
          (error: { code?: string }) => error.code === ErrorCode.GRANT_REFUSED,
        ),
      );
    });

    /** A step's intent for time.get_time, as the orchestrator sends it through acp-policy. */
    const intent = (runId: string) => ({
      decision: {
        action: "tools.call" as const,
        resource: { tool: "time.get_time" },
        arguments: { timezone: "UTC" },
        runId,
        stepId: "s1",
        attempt: 1,
      },
      task: {
        messageId: randomUUID(),
        role: "ROLE_USER" as const,
        taskId: `${runId}:s1:1`,
        contextId: runId,
        parts: [{ data: { server: "time", tool: "get_time", arguments: { timezone: "UTC" } } }],
        metadata: { runId, stepId: "s1", attempt: 1 },
      },
    });

    it.each(
      [
        NatsUser.SUBMITTER,
        NatsUser.MCP_WORKER,
        NatsUser.LLM_AGENT,
        NatsUser.ACP_POLICY,
        NatsUser.POLICY_ADMIN,
      ].flatMap((user) =>
        [Subjects.POLICY_TASKS, Subjects.POLICY_TASKS_RUN].map((subject) => [user, subject] as const),
      ),
    )("bus - %s cannot publish a step's intent on %s, which acp-policy never sees", async (user, subject) => {
      const runId = `intent-${randomUUID()}`;
      let seen = 0;
      const watching = loom.observer.subscribe(subject, {
        callback: (_error, message) => {
          if (message.string().includes(runId)) seen += 1;
        },
      });
      await loom.observer.flush();
      await attack(
        AttackClass.TRUSTED_BUS,
        `${user} publishes a tool task's intent on ${subject}`,
        async () => {
          const refused = await request(as[user], subject, PolicyTaskContract, intent(runId), {
            timeoutMs: 1_500,
            headers: { [Headers.AUTHORIZATION]: `Bearer ${analyst}` },
          }).then(
            () => false,
            () => true,
          );
          await loom.observer.flush();
          return refused && seen === 0;
        },
      );
      watching.unsubscribe();
    });

    it("bus - a tool task asked on a plain request inbox, where the worker may not answer, is refused before any decision", async () => {
      await attack(
        AttackClass.TRUSTED_BUS,
        "the orchestrator's user asks for a tool task answered on its plain request inbox",
        async () => {
          const code = await request(
            as[NatsUser.ORCHESTRATOR],
            Subjects.POLICY_TASKS,
            PolicyTaskContract,
            intent(`intent-${randomUUID()}`),
            { timeoutMs: 15_000, headers: { [Headers.AUTHORIZATION]: `Bearer ${analyst}` } },
          ).then(
            () => undefined,
            (error: LoomError) => error.code,
          );
          return code === ErrorCode.INVALID_INPUT;
        },
      );
    });

    it("bus - control: the orchestrator's user sends an intent with a caller's token and the worker's answer comes back", async () => {
      await control("the orchestrator's user sends a tool task through acp-policy", async () => {
        // Answered on the orchestrator's tool-task inbox, the one inbox of its the worker may publish to.
        const inbox = new MuxedRequests(as[NatsUser.ORCHESTRATOR], toolTaskInboxOf(NatsUser.ORCHESTRATOR));
        try {
          const task = await sendToolTask(as[NatsUser.ORCHESTRATOR], intent(`intent-${randomUUID()}`), {
            authorization: `Bearer ${analyst}`,
            channel: "public",
            timeoutMs: 15_000,
            inbox,
          });
          return task.status.state === TaskState.COMPLETED;
        } finally {
          inbox.close();
        }
      });
    });

    it.each([
      [NatsUser.SUBMITTER, "acp-policy"],
      [NatsUser.ORCHESTRATOR, "acp-policy"],
      [NatsUser.MCP_WORKER, "acp-policy"],
      [NatsUser.LLM_AGENT, "mcp-worker"],
      [NatsUser.ACP_POLICY, "mcp-worker"],
    ] as const)("bus - %s cannot append an audit record in %s's name", async (user, victim) => {
      const jsm = await jetstreamManager(loom.observer);
      const before = (await jsm.streams.info(Streams.AUDIT)).state.messages;
      await attack(AttackClass.TRUSTED_BUS, `${user} appends an audit record as ${victim}`, async () => {
        const forged = JSON.stringify({ kind: "policy.decision", effect: "allow", principal: "root" });
        const refused = await publishRefused(user, auditSubject(victim, "forged"), forged);
        return refused && (await jsm.streams.info(Streams.AUDIT)).state.messages === before;
      });
    });

    it("bus - control: acp-policy and the mcp-worker wrote the run's audit records under their own names", async () => {
      await control("each service audits under its own subject", async () => {
        const jsm = await jetstreamManager(loom.observer);
        const counts = await Promise.all(
          ["acp-policy", "mcp-worker"].map(async (service) => {
            const info = await jsm.streams.info(Streams.AUDIT, {
              subjects_filter: auditSubject(service, "*"),
            });
            return Object.values(info.state.subjects ?? {}).reduce((sum, count) => sum + count, 0);
          }),
        );
        return counts.every((count) => count > 0);
      });
    });
  });

  describe("private buckets", () => {
    it.each([
      [NatsUser.SUBMITTER, Buckets.STEPS],
      [NatsUser.SUBMITTER, Buckets.MEMORY],
      [NatsUser.ORCHESTRATOR, Buckets.STEPS],
      [NatsUser.MCP_WORKER, Buckets.RUNS],
      [NatsUser.MCP_WORKER, Buckets.MEMORY],
      [NatsUser.LLM_AGENT, Buckets.RUNS],
      [NatsUser.LLM_AGENT, Buckets.STEPS],
      [NatsUser.LLM_AGENT, Buckets.MEMORY],
      [NatsUser.ACP_POLICY, Buckets.RUNS],
      [NatsUser.ACP_POLICY, Buckets.STEPS],
      [NatsUser.ACP_POLICY, Buckets.MEMORY],
    ] as const)("bus - %s cannot read %s", async (user, bucket) => {
      const key = bucket === Buckets.STEPS ? stepKey : bucket === Buckets.MEMORY ? contextId : runId;
      expect(await keyExists(bucket, key), `${bucket} holds ${key}`).toBe(true);
      await attack(AttackClass.TRUSTED_BUS, `${user} reads ${bucket} (${key})`, () =>
        readRefused(user, bucket, key),
      );
    });

    it("bus - control: each bucket's owner reads it", async () => {
      for (const [user, bucket, key] of [
        [NatsUser.ORCHESTRATOR, Buckets.RUNS, runId],
        [NatsUser.ORCHESTRATOR, Buckets.MEMORY, contextId],
        [NatsUser.MCP_WORKER, Buckets.STEPS, stepKey],
      ] as const) {
        await control(`${user} reads ${bucket}`, async () => !(await readRefused(user, bucket, key)));
      }
    });

    it.each([
      [NatsUser.ORCHESTRATOR, `$JS.API.STREAM.DELETE.${Streams.AUDIT}`],
      [NatsUser.ACP_POLICY, `$JS.API.STREAM.PURGE.${Streams.EVENTS}`],
      [NatsUser.MCP_WORKER, `$JS.API.STREAM.DELETE.KV_${Buckets.GRANT_KEYS}`],
      [NatsUser.LLM_AGENT, `$JS.API.STREAM.MSG.DELETE.${Streams.AUDIT}`],
    ] as const)("bus - %s cannot destroy streams (%s)", async (user, subject) => {
      await attack(AttackClass.TRUSTED_BUS, `${user} sends ${subject}`, async () => {
        const refused = await as[user].request(subject, JSON.stringify({ seq: 1 }), { timeout: 1_500 }).then(
          (reply) => reply.json<{ error?: unknown }>().error !== undefined,
          () => true,
        );
        const jsm = await jetstreamManager(loom.observer);
        const intact = await Promise.all(
          [Streams.AUDIT, Streams.EVENTS, `KV_${Buckets.GRANT_KEYS}`].map((stream) =>
            jsm.streams.info(stream).then((info) => info.state.messages > 0),
          ),
        );
        return refused && intact.every(Boolean);
      });
    });
  });

  describe("stream configs", () => {
    /** What a user may do to a stream that no service needs: each is the operator's act or nobody's. */
    const verbs = ["UPDATE", "DELETE", "PURGE"] as const;
    const everyUser = [
      NatsUser.ORCHESTRATOR,
      NatsUser.ACP_POLICY,
      NatsUser.MCP_WORKER,
      NatsUser.LLM_AGENT,
      NatsUser.SUBMITTER,
    ] as const;

    /** Every Loom stream and bucket on the broker, with its config as it stands. */
    async function loomStreams(): Promise<Map<string, StreamConfig>> {
      const configs = new Map<string, StreamConfig>();
      for await (const { config } of (await jetstreamManager(loom.observer)).streams.list())
        if (isLoomStream(config.name)) configs.set(config.name, config);
      return configs;
    }

    /**
     * The request an attacker sends: an update that shrinks the stream to one message and a minute
     * (dropping audit records, forgetting used grants) and captures a subject it may publish.
     */
    function payloadOf(verb: (typeof verbs)[number], config: StreamConfig, user: NatsUser): string {
      if (verb !== "UPDATE") return "{}";
      return JSON.stringify({
        ...config,
        max_msgs: 1,
        max_age: 60_000_000_000,
        subjects: [...(config.subjects ?? []), `loom.v1.alerts.capture.${user}`],
      });
    }

    it.each(everyUser)(
      "bus - %s cannot update, delete or purge any stream or bucket (audit, grant uses, runs, events, steps, tokens, keys, …)",
      async (user) => {
        const before = await loomStreams();
        expect([...before.keys()]).toEqual(
          expect.arrayContaining([
            Streams.AUDIT,
            Streams.RUNS,
            Streams.EVENTS,
            Streams.TOOL_CALLS,
            `KV_${Buckets.GRANT_USES}`,
            `KV_${Buckets.GRANT_KEYS}`,
            `KV_${Buckets.AUDIT_KEYS}`,
            `KV_${Buckets.RUN_TOKENS}`,
            `KV_${Buckets.RUNS}`,
            `KV_${Buckets.STEPS}`,
            `KV_${Buckets.POLICY}`,
            `KV_${Buckets.WORKFLOWS}`,
          ]),
        );
        const nc = await loom.connectAs(user);
        const violations = permissionViolations(nc);
        const attempts = [...before].flatMap(([stream, config]) =>
          verbs.map(async (verb) => {
            const subject = `$JS.API.STREAM.${verb}.${stream}`;
            const answered = await nc
              .request(subject, payloadOf(verb, config, user), { timeout: 2_000 })
              .then(
                (reply) => reply.json<{ error?: unknown }>().error === undefined,
                () => false,
              );
            return { verb, stream, subject, answered };
          }),
        );
        const results = await Promise.all(attempts);
        const reported = await violations();
        const after = await loomStreams();
        for (const { verb, stream, subject, answered } of results) {
          await attack(AttackClass.TRUSTED_BUS, `${user} sends ${verb} for ${stream}`, async () => {
            const config = after.get(stream);
            return (
              !answered &&
              reported.includes(`publish to ${subject}`) &&
              config !== undefined &&
              JSON.stringify(config) === JSON.stringify(before.get(stream))
            );
          });
        }
      },
    );

    it("bus - control: the operator's own NATS user changes a stream, and the services start on an existing broker", async () => {
      const jsm = await jetstreamManager(await loom.connectAs(OPERATOR));
      await control("the operator updates the description of LOOM_TOOL_CALLS", async () => {
        const { config } = await jsm.streams.info(Streams.TOOL_CALLS);
        const updated = await jsm.streams.update(Streams.TOOL_CALLS, { ...config, description: "operator" });
        return updated.config.description === "operator";
      });
      await control("loom streams replicate (as the operator) answers on one server", async () => {
        const replicated = await loom.cli([
          "--nats",
          loom.users.urlAs(OPERATOR),
          "streams",
          "replicate",
          "1",
          "--json",
        ]);
        return replicated.code === 0 && JSON.parse(replicated.stdout).moved.length === 0;
      });
      await control("every service restarts on the existing streams and a run completes", async () => {
        for (const service of loom.stack.services.map((running) => running.name))
          await loom.stack.restart(service);
        await waitUntilReady(await loom.connectAs(NatsUser.ORCHESTRATOR), {
          tools: ["time.get_time", "crm.get_contact"],
          timeoutMs: 60_000,
          stack: loom.stack,
        });
        const run = await loom.cli(
          ["submit", "hello", "--input", '{"contactId":"c-1"}', "--watch", "--json"],
          {
            token: analyst,
          },
        );
        return (
          run.code === 0 && JSON.parse(run.stdout.trim().split("\n").at(-1) ?? "{}").state === "completed"
        );
      });
    });
  });

  describe("spans", () => {
    /** A span record claiming acp-policy allowed something, in a trace of the attacker's choosing. */
    const forgedSpan = (traceId: string, user: string) =>
      JSON.stringify({
        traceId,
        spanId: randomUUID().replaceAll("-", "").slice(0, 16),
        name: "decide tools.call",
        service: "acp-policy",
        kind: "server",
        startMs: Date.now(),
        durationMs: 1,
        status: "ok",
        attributes: { "loom.policy.effect": "allow", forgedBy: user },
      });
    const spansIn = async (traceId: string) => {
      const jsm = await jetstreamManager(loom.observer);
      const info = await jsm.streams.info(Streams.SPANS, { subjects_filter: spansSubject(traceId) });
      return info.state.subjects?.[spansSubject(traceId)] ?? 0;
    };

    it.each([NatsUser.SUBMITTER, NatsUser.POLICY_ADMIN])(
      "bus - %s cannot publish a span into a trace (loom.v1.spans.>)",
      async (user) => {
        const traceId = randomUUID().replaceAll("-", "");
        await attack(AttackClass.TRUSTED_BUS, `${user} publishes a span into LOOM_SPANS`, async () => {
          const nc = await loom.connectAs(user);
          const violations = permissionViolations(nc);
          nc.publish(spansSubject(traceId), forgedSpan(traceId, user));
          const refused = (await violations()).includes(`publish to ${spansSubject(traceId)}`);
          const noAck = await publishRefused(user, spansSubject(traceId), forgedSpan(traceId, user));
          return refused && noAck && (await spansIn(traceId)) === 0;
        });
      },
    );

    it("bus - control: each service's user publishes its spans", async () => {
      for (const user of [
        NatsUser.ORCHESTRATOR,
        NatsUser.ACP_POLICY,
        NatsUser.MCP_WORKER,
        NatsUser.LLM_AGENT,
      ]) {
        const traceId = randomUUID().replaceAll("-", "");
        await control(`${user} publishes a span`, async () => {
          const ack = await jetstream(as[user]).publish(spansSubject(traceId), forgedSpan(traceId, user));
          return ack.stream === Streams.SPANS && (await spansIn(traceId)) === 1;
        });
      }
    });
  });

  describe("connections", () => {
    const connects = (options: { user?: string; pass?: string }) =>
      connectTo(loom.nats.url, { ...options, maxReconnectAttempts: 0, timeout: 3_000 }).then(
        async (nc) => {
          await nc.close();
          return true;
        },
        () => false,
      );

    it("bus - a connection without credentials, with a wrong password, or with another user's password is refused", async () => {
      await attack(
        AttackClass.TRUSTED_BUS,
        "a connection without credentials",
        async () => !(await connects({})),
      );
      await attack(
        AttackClass.TRUSTED_BUS,
        "a connection as submitter with a wrong password",
        async () => !(await connects({ user: NatsUser.SUBMITTER, pass: "p0000000000000000000000000" })),
      );
      await attack(
        AttackClass.TRUSTED_BUS,
        "a connection as policy-admin with the submitter's password",
        async () =>
          !(await connects({
            user: NatsUser.POLICY_ADMIN,
            pass: loom.users.password(NatsUser.SUBMITTER),
          })),
      );
      await control("the submitter connects with its own password", () =>
        connects({ user: NatsUser.SUBMITTER, pass: loom.users.password(NatsUser.SUBMITTER) }),
      );
    });

    it("bus - the CLI without the data dir's passwords is refused, naming the users it expects", async () => {
      const result = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
        const child = execFile(
          process.execPath,
          [join(REPO_ROOT, "services/cli/bin.ts"), "--nats", loom.nats.url, "tools", "list"],
          { cwd: REPO_ROOT, env: { ...process.env, LOOM_DATA_DIR: join(loom.users.dataDir, "elsewhere") } },
          (_error, _stdout, stderr) => resolve({ code: child.exitCode, stderr }),
        );
      });
      expect(result.code).toBe(1);
      expect(result.stderr).toContain("NATS_AUTH_FAILED");
      expect(result.stderr).toContain("LOOM_NATS_SUBMITTER_PASSWORD");
      await control("the CLI with the data dir's passwords lists the tools", async () => {
        const listed = await loom.cli(["tools", "list"]);
        return listed.code === 0 && listed.stdout.includes("crm.get_contact");
      });
    });
  });

  describe("inboxes", () => {
    it.each([NatsUser.SUBMITTER, NatsUser.MCP_WORKER, NatsUser.LLM_AGENT, NatsUser.POLICY_ADMIN])(
      "bus - %s cannot read the replies other users get on _INBOX.> (tokens, grants, records, results)",
      async (user) => {
        await attack(
          AttackClass.TRUSTED_BUS,
          `${user} subscribes to _INBOX.> while others work`,
          async () => {
            const sniffer = await loom.connectAs(user);
            const violations = permissionViolations(sniffer);
            const seen: string[] = [];
            const sniffing = sniffer.subscribe("_INBOX.>", {
              // NATS refuses the subscription by calling back with the error and no message.
              callback: (error, message) => {
                if (error === null) seen.push(message.subject);
              },
            });
            const run = await loom.cli(
              ["submit", "hello", "--input", '{"contactId":"c-1"}', "--watch", "--json"],
              { token: tokenFor("ann", "analyst") },
            );
            const refused = await violations();
            sniffing.unsubscribe();
            return run.code === 0 && seen.length === 0 && refused.some((line) => line.includes("_INBOX.>"));
          },
        );
      },
    );

    it("bus - control: every user still gets the replies to its own requests", async () => {
      await control("the submitter's CLI lists runs and the tools", async () => {
        const runs = await loom.cli(["runs", "list"], { token: tokenFor("ann", "analyst") });
        const tools = await loom.cli(["tools", "list"]);
        return runs.code === 0 && tools.code === 0 && tools.stdout.includes("crm.get_contact");
      });
    });
  });
});
