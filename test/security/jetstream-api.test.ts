import { randomUUID } from "node:crypto";
import { jetstream, jetstreamManager, type StreamConfig } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AuditKind, AuditRecordSchema } from "../../schemas/audit.ts";
import {
  agentTasksSubject,
  Buckets,
  Consumers,
  LLM_AGENT,
  Streams,
  Subjects,
  toolCallsSubject,
} from "../../schemas/subjects.ts";
import { CallKind, type ToolCallRecord } from "../../schemas/tool-calls.ts";
import { type Stack, startStack, waitUntilReady } from "../../services/cli/stack.ts";
import { AttackClass, attack, control } from "../helpers/attack-tally.ts";
import { storedAudit } from "../helpers/audit.ts";
import { type Loom, NatsUser, startLoom, tokenFor } from "../helpers/loom.ts";
import { OPERATOR, permissionViolations, refusedRequest } from "../helpers/nats-users.ts";
import { TEST_AUTH_ENV } from "../helpers/tokens.ts";

/** The buckets and streams no user but their owner may read (tokens, records, secrets, results). */
const PRIVATE = [
  `KV_${Buckets.RUN_TOKENS}`,
  `KV_${Buckets.RUNS}`,
  `KV_${Buckets.PUSH}`,
  `KV_${Buckets.MEMORY}`,
  `KV_${Buckets.STEPS}`,
  `KV_${Buckets.RESULTS}`,
  Streams.EVENTS,
  Streams.RUNS,
] as const;

/** Subjects a republish could write into: the policy, grant keys, a worker's task, audit records and keys. */
const PROTECTED = [
  "$KV.loom_policy.active",
  "$KV.loom_grant_keys.forged-kid",
  "loom.v1.agents.mcp-worker.tasks",
  "$KV.loom_audit_keys.acp-policy.forged",
  "loom.v1.audit.acp-policy.forged",
] as const;

/** For each user, a name its code may create (for the submitter, which creates none, the tools bucket): all exist once a stack ran. */
const OWN_NAME: Record<NatsUser, string> = {
  [NatsUser.ORCHESTRATOR]: Streams.SPANS,
  [NatsUser.ACP_POLICY]: `KV_${Buckets.POLICY}`,
  [NatsUser.MCP_WORKER]: `KV_${Buckets.STEPS}`,
  [NatsUser.LLM_AGENT]: `KV_${Buckets.GRANT_USES}`,
  [NatsUser.SUBMITTER]: `KV_${Buckets.TOOLS}`,
  [NatsUser.POLICY_ADMIN]: `KV_${Buckets.POLICY}`,
};

/** A stream each user reads, for the control beside its attacks: the submitter reads none. */
const READS: Record<Exclude<NatsUser, typeof NatsUser.SUBMITTER>, string> = {
  [NatsUser.ORCHESTRATOR]: Streams.RUNS,
  [NatsUser.ACP_POLICY]: `KV_${Buckets.POLICY}`,
  [NatsUser.MCP_WORKER]: `KV_${Buckets.STEPS}`,
  [NatsUser.LLM_AGENT]: `KV_${Buckets.GRANT_USES}`,
  [NatsUser.POLICY_ADMIN]: Streams.AUDIT,
};

/**
 * The JetStream API as an outside red team used it against `npm start`: NATS checks an API
 * request's subject, never its body, so a user that may create any stream can capture any
 * subject, mirror or source any stream, or republish into any subject. Every user of
 * .loom/nats-users.env tries each of those, pulls another service's durable, reads the
 * submissions and listens to the API; each is a permission violation and changes nothing. The
 * controls: the stack started fresh (every service created its streams), a run completes, each
 * user still reads what it needs, the operator replicates streams, the audit verifies, and a
 * restarted stack starts on the existing streams.
 */
describe("security - JetStream API: every NATS user gets exactly the API it needs", () => {
  let loom: Loom;
  const as = {} as Record<NatsUser, NatsConnection>;
  const violations = {} as Record<NatsUser, () => Promise<readonly string[]>>;
  let streamsBefore: string[];
  let runId: string;

  const streamNames = async () => {
    const names: string[] = [];
    for await (const name of (await jetstreamManager(loom.observer)).streams.names()) names.push(name);
    return names.sort();
  };
  const submissions = async () =>
    (await jetstreamManager(loom.observer)).consumers.info(Streams.RUNS, Consumers.ORCHESTRATOR_SUBMISSIONS);

  beforeAll(async () => {
    loom = await startLoom();
    for (const user of Object.values(NatsUser)) {
      as[user] = await loom.connectAs(user);
      violations[user] = permissionViolations(as[user]);
    }
    const run = await loom.cli(["submit", "hello", "--input", '{"contactId":"c-1"}', "--watch", "--json"], {
      token: tokenFor("ann", "analyst"),
    });
    expect(run.code, run.stderr).toBe(0);
    runId = JSON.parse(run.stdout.trim().split("\n").at(-1) ?? "{}").runId;
    streamsBefore = await streamNames();
  });
  afterAll(async () => {
    await loom?.[Symbol.asyncDispose]();
  });

  /** An API request NATS refuses as a publish violation: no answer, and the violation reported. */
  const refusedByNats = (user: NatsUser, subject: string, body: unknown) =>
    refusedRequest(as[user], violations[user], subject, body);

  const create = (user: NatsUser, name: string, config: Record<string, unknown>) =>
    refusedByNats(user, `$JS.API.STREAM.CREATE.${name}`, { name, storage: "memory", ...config });

  it("control - a fresh stack created every Loom stream and bucket, and a run completed", async () => {
    await control("every stream and bucket exists after the first start", async () => {
      const expected = [...Object.values(Streams), ...Object.values(Buckets).map((bucket) => `KV_${bucket}`)];
      return expected.every((name) => streamsBefore.includes(name));
    });
    await control("a run completes", async () => typeof runId === "string" && runId.length > 0);
  });

  describe.each(Object.values(NatsUser))("as %s", (user) => {
    it("creates no stream that captures requests, inboxes or another's stream", async () => {
      const tag = `${user.replace(/-/g, "_")}_${randomUUID().slice(0, 8)}`;
      await attack(
        AttackClass.TRUSTED_BUS,
        `${user} creates a stream capturing policy and agent requests`,
        () => create(user, `RT_CAP_${tag}`, { subjects: ["loom.v1.policy.>", "loom.v1.agents.>"] }),
      );
      await attack(AttackClass.TRUSTED_BUS, `${user} creates a stream capturing every inbox`, () =>
        create(user, `RT_INBOX_${tag}`, { subjects: ["_INBOX.>"] }),
      );
      for (const source of PRIVATE) {
        await attack(AttackClass.TRUSTED_BUS, `${user} mirrors ${source}`, () =>
          create(user, `RT_MIRROR_${tag}_${source}`, { mirror: { name: source } }),
        );
        await attack(AttackClass.TRUSTED_BUS, `${user} sources ${source}`, () =>
          create(user, `RT_SOURCES_${tag}_${source}`, { sources: [{ name: source }] }),
        );
      }
      for (const [index, dest] of PROTECTED.entries()) {
        await attack(AttackClass.TRUSTED_BUS, `${user} republishes into ${dest}`, () =>
          create(user, `RT_REPUB_${tag}_${index}`, {
            subjects: [`_INBOX.${user}.rt.${index}`],
            republish: { src: ">", dest },
          }),
        );
      }
      // A name the user may create exists already: a create with another config is refused by JetStream.
      const own = OWN_NAME[user];
      const ownBefore = await (await jetstreamManager(loom.observer)).streams.info(own);
      await attack(
        AttackClass.TRUSTED_BUS,
        `${user} recreates ${own} capturing policy requests`,
        async () => {
          const reply = await as[user]
            .request(
              `$JS.API.STREAM.CREATE.${own}`,
              JSON.stringify({ ...ownBefore.config, subjects: ["loom.v1.policy.>"] }),
              { timeout: 1_500 },
            )
            .then(
              (message) => message.json<{ error?: unknown }>().error !== undefined,
              () =>
                violations[user]().then((seen) => seen.includes(`publish to $JS.API.STREAM.CREATE.${own}`)),
            );
          const after = await (await jetstreamManager(loom.observer)).streams.info(own);
          return reply && JSON.stringify(after.config.subjects) === JSON.stringify(ownBefore.config.subjects);
        },
      );
    });

    it("reads no submission, pulls no other service's durable and hears no API request", async () => {
      if (user !== NatsUser.ORCHESTRATOR) {
        const before = await submissions();
        await attack(
          AttackClass.TRUSTED_BUS,
          `${user} reads a submission from LOOM_RUNS (STREAM.MSG.GET)`,
          () => refusedByNats(user, `$JS.API.STREAM.MSG.GET.${Streams.RUNS}`, { seq: 1 }),
        );
        await attack(AttackClass.TRUSTED_BUS, `${user} reads a submission from LOOM_RUNS (DIRECT.GET)`, () =>
          refusedByNats(user, `$JS.API.DIRECT.GET.${Streams.RUNS}`, { seq: 1 }),
        );
        await attack(AttackClass.TRUSTED_BUS, `${user} pulls the orchestrator's submissions`, async () => {
          const refused = await refusedByNats(
            user,
            `$JS.API.CONSUMER.MSG.NEXT.${Streams.RUNS}.${Consumers.ORCHESTRATOR_SUBMISSIONS}`,
            { batch: 1, expires: 1_000_000_000 },
          );
          const after = await submissions();
          return refused && after.delivered.stream_seq === before.delivered.stream_seq;
        });
        await attack(AttackClass.TRUSTED_BUS, `${user} pulls the orchestrator's webhook deliveries`, () =>
          refusedByNats(user, `$JS.API.CONSUMER.MSG.NEXT.${Streams.EVENTS}.${Consumers.A2A_PUSH}`, {
            batch: 1,
          }),
        );
        await attack(AttackClass.TRUSTED_BUS, `${user} creates a consumer on LOOM_RUNS`, () =>
          refusedByNats(user, `$JS.API.CONSUMER.CREATE.${Streams.RUNS}.rt_${randomUUID().slice(0, 8)}`, {
            stream_name: Streams.RUNS,
            config: { ack_policy: "none" },
          }),
        );
      }
      await attack(AttackClass.TRUSTED_BUS, `${user} subscribes to $JS.API.>`, async () => {
        const subscription = as[user].subscribe("$JS.API.>");
        const seen = await violations[user]();
        subscription.unsubscribe();
        return seen.includes("subscription to $JS.API.>");
      });
      if (user === NatsUser.SUBMITTER) {
        await control("submitter still lists the tools, through the orchestrators", async () => {
          const listed = await loom.cli(["tools", "list"]);
          return listed.code === 0 && listed.stdout.includes("crm.get_contact");
        });
        return;
      }
      const stream = READS[user];
      await control(`${user} still reads ${stream}`, async () => {
        const info = await jetstreamManager(as[user], { timeout: 5_000 }).then((jsm) =>
          jsm.streams.info(stream),
        );
        return info.config.name === stream;
      });
    });
  });

  it("the worker and the llm agent forge no reply into an inbox they owe nothing", async () => {
    const forgeries = [
      [NatsUser.MCP_WORKER, "_INBOX.submitter.forged"],
      [NatsUser.MCP_WORKER, "_INBOX.policy-admin.forged"],
      [NatsUser.MCP_WORKER, "_INBOX.acp-policy.forged"],
      [NatsUser.LLM_AGENT, "_INBOX.orchestrator.forged"],
      [NatsUser.LLM_AGENT, "_INBOX.mcp-worker.forged"],
      [NatsUser.LLM_AGENT, "_INBOX.submitter.forged"],
    ] as const;
    for (const [user, inbox] of forgeries) {
      await attack(AttackClass.TRUSTED_BUS, `${user} publishes a forged reply to ${inbox}`, async () => {
        as[user].publish(inbox, JSON.stringify({ state: "completed" }));
        return (await violations[user]()).includes(`publish to ${inbox}`);
      });
    }
    // The control: both still answer requests (the run above went through the worker; the llm
    // agent answers a malformed task with its typed error).
    await control("llm-agent answers a request through its reply subject", async () =>
      as[NatsUser.MCP_WORKER].request(agentTasksSubject(LLM_AGENT), "{}", { timeout: 5_000 }).then(
        () => true,
        () => false,
      ),
    );
  });

  it("the worker writes no call record: statistics come from its execution records in LOOM_AUDIT", async () => {
    const worker = NatsUser.MCP_WORKER;
    const observed = await jetstreamManager(loom.observer);
    const before = (await observed.streams.info(Streams.TOOL_CALLS)).state.messages;
    // A well-formed record of a call that never happened, which `loom tools stats` would count.
    const forged: ToolCallRecord = {
      type: "call",
      server: "crm",
      target: "get_contact",
      kind: CallKind.TOOL,
      serverVersion: "1.0.0",
      outcome: "ok",
      latencyMs: 1,
      cached: false,
      runId,
      stepId: "forged",
      timestamp: new Date().toISOString(),
    };
    for (const subject of [toolCallsSubject("crm", runId), toolCallsSubject("crm")]) {
      await attack(AttackClass.TRUSTED_BUS, `${worker} publishes a call record on ${subject}`, async () => {
        const stored = await jetstream(as[worker], { timeout: 1_500 })
          .publish(subject, JSON.stringify(forged))
          .then(
            () => true,
            () => false,
          );
        return !stored && (await violations[worker]()).includes(`publish to ${subject}`);
      });
    }
    await attack(AttackClass.TRUSTED_BUS, `${worker} creates ${Streams.TOOL_CALLS}`, () =>
      create(worker, Streams.TOOL_CALLS, { subjects: [Subjects.TOOL_CALLS_ALL, Subjects.FEEDBACK_ALL] }),
    );
    await attack(AttackClass.TRUSTED_BUS, `${worker} reads the info of ${Streams.TOOL_CALLS}`, () =>
      refusedByNats(worker, `$JS.API.STREAM.INFO.${Streams.TOOL_CALLS}`, {}),
    );
    expect((await observed.streams.info(Streams.TOOL_CALLS)).state.messages).toBe(before);
    await control(
      "the run's call is on record as the worker's execution, with the version that served it",
      async () => {
        const records = (await storedAudit(loom.observer)).map(({ data }) =>
          AuditRecordSchema.parse(JSON.parse(new TextDecoder().decode(data))),
        );
        return records.some(
          (record) =>
            record.service === "mcp-worker" &&
            record.kind === AuditKind.TOOL_EXECUTION &&
            record.runId === runId &&
            record.outcome === "ok" &&
            record.serverVersion !== undefined,
        );
      },
    );
  });

  it("nothing changed: no stream was added, and the submissions consumer is the orchestrator's alone", async () => {
    expect(await streamNames()).toEqual(streamsBefore);
    const info = await submissions();
    expect(info.num_ack_pending).toBe(0);
  });

  it("policy-admin changes no stream: no source, republish or limit that reads tokens or rewrites the audit", async () => {
    const jsm = await jetstreamManager(as[NatsUser.POLICY_ADMIN]);
    // Read as the observer: policy-admin reads the info of the streams it reads, no other.
    const observed = await jetstreamManager(loom.observer);
    const changes: Array<[string, string, (config: StreamConfig) => Partial<StreamConfig>]> = [
      [
        "LOOM_SPANS sources the run tokens",
        Streams.SPANS,
        () => ({ sources: [{ name: `KV_${Buckets.RUN_TOKENS}` }] }),
      ],
      [
        "LOOM_SPANS sources the submissions (callers' tokens)",
        Streams.SPANS,
        () => ({ sources: [{ name: Streams.RUNS }] }),
      ],
      [
        "KV_loom_policy republishes into the audit",
        `KV_${Buckets.POLICY}`,
        () => ({
          republish: { src: "$KV.loom_policy.x.*", dest: "loom.v1.audit.acp-policy.{{wildcard(1)}}" },
        }),
      ],
      [
        "KV_loom_policy republishes into the pinned audit keys",
        `KV_${Buckets.POLICY}`,
        () => ({
          republish: { src: "$KV.loom_policy.y.*", dest: "$KV.loom_audit_keys.acp-policy.{{wildcard(1)}}" },
        }),
      ],
      ["LOOM_AUDIT keeps one record per subject", Streams.AUDIT, () => ({ max_msgs_per_subject: 1 })],
      ["LOOM_EVENTS at one replica", Streams.EVENTS, () => ({ num_replicas: 1 })],
    ];
    for (const [name, stream, change] of changes) {
      await attack(AttackClass.TRUSTED_BUS, `policy-admin: ${name}`, async () => {
        const { config } = await observed.streams.info(stream);
        return jsm.streams.update(stream, { ...config, ...change(config) }).then(
          () => false,
          () => true,
        );
      });
    }
    await attack(AttackClass.TRUSTED_BUS, "loom streams replicate 3 as policy-admin", async () => {
      const replicated = await loom.cli([
        "--nats",
        loom.users.urlAs(NatsUser.POLICY_ADMIN),
        "streams",
        "replicate",
        "3",
      ]);
      return replicated.code !== 0 && replicated.stderr.includes("may not change streams");
    });
  });

  it("control - the operator's own NATS user replicates streams, and the audit verifies intact", async () => {
    await control("the operator updates a stream (the one change Loom's users may not make)", async () => {
      const jsm = await jetstreamManager(await loom.connectAs(OPERATOR));
      const { config } = await jsm.streams.info(Streams.EVENTS);
      const updated = await jsm.streams.update(Streams.EVENTS, { ...config, description: "operator" });
      return updated.config.description === "operator";
    });
    await control("loom streams replicate 1 as the operator", async () => {
      const replicated = await loom.cli(["--nats", loom.users.urlAs(OPERATOR), "streams", "replicate", "1"]);
      return replicated.code === 0;
    });
    await control(
      "loom streams lock-pins as the operator: a new stack's pins are already write-once",
      async () => {
        const locked = await loom.cli(["--nats", loom.users.urlAs(OPERATOR), "streams", "lock-pins"]);
        return locked.code === 0 && locked.stdout.includes("already write-once");
      },
    );
    await control("loom audit verify says intact", async () => {
      const verified = await loom.cli(["audit", "verify"]);
      return verified.code === 0 && verified.stdout.includes("intact");
    });
  });

  it("control - a restarted stack starts on the existing streams and completes a run", async () => {
    await loom.stack.stop();
    let restarted: Stack | undefined;
    try {
      restarted = await startStack({
        natsUrl: (service) => loom.users.urlAs(service),
        logDir: loom.logDir,
        env: { LOG_LEVEL: "debug", LOOM_A2A_PORT: "0", ...TEST_AUTH_ENV },
      });
      const started = restarted;
      await waitUntilReady(as[NatsUser.ORCHESTRATOR], {
        tools: ["time.get_time", "crm.get_contact"],
        timeoutMs: 60_000,
        stack: started,
      });
      await control("a run completes on the restarted stack", async () => {
        const run = await loom.cli(
          ["submit", "hello", "--input", '{"contactId":"c-1"}', "--watch", "--json"],
          {
            token: tokenFor("ann", "analyst"),
          },
        );
        return run.code === 0 && run.stdout.includes('"completed"');
      });
      expect(await streamNames()).toEqual(streamsBefore);
    } finally {
      await restarted?.stop();
    }
  });
});
