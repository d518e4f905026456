import { randomUUID } from "node:crypto";
import { jetstreamManager } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { toolTaskInboxOf } from "../../schemas/nats-users.ts";
import { Buckets, Streams } from "../../schemas/subjects.ts";
import { AttackClass, attack, control } from "../helpers/attack-tally.ts";
import { type GatewayStack, startGateway } from "../helpers/gateway.ts";
import { NatsUser, permissionViolations, refusedRequest } from "../helpers/nats-users.ts";
import { tokenFor } from "../helpers/tokens.ts";

/** What the worker and the llm agent may not answer: the orchestrator's own request inbox. */
const ORCHESTRATOR_INBOX = "_INBOX.orchestrator.";
const TOOL_TASK_INBOX = `${toolTaskInboxOf(NatsUser.ORCHESTRATOR)}.`;

/** The buckets `loom tools list` and `loom servers list` read, through the orchestrators alone now. */
const LISTED = [`KV_${Buckets.TOOLS}`, `KV_${Buckets.SERVERS}`] as const;

/** The streams policy-admin's commands read (`policy apply`, `audit tail|verify`, `runs trace`). */
const ADMIN_READS: readonly string[] = [
  Streams.AUDIT,
  Streams.SPANS,
  `KV_${Buckets.AUDIT_KEYS}`,
  `KV_${Buckets.GRANT_KEYS}`,
  `KV_${Buckets.POLICY}`,
];
/** Every other stream: their subjects (a bucket's keys: run, context, workflow ids) are not policy-admin's. */
const NOT_ADMIN_READS = [...Object.values(Streams), ...Object.values(Buckets).map((bucket) => `KV_${bucket}`)]
  .filter((name) => !ADMIN_READS.includes(name))
  .sort();

/**
 * Three scopes of the NATS users that subject permissions could not see until the API moved: the
 * mcp-worker answered tool tasks anywhere under the orchestrator's inbox (so it could answer a
 * policy decision or a read first); the submitter consumed the tool and server buckets (a push
 * consumer delivers where its body says); policy-admin read every stream's info (with
 * `subjects_filter`, a private bucket's keys). Each attack is refused by nats-server, beside a
 * control: a tool step and a gateway call complete, both listings show the demo servers, and
 * policy-admin's commands work.
 */
describe("security - bus scopes: replies, listings and stream info", () => {
  let gateway: GatewayStack;
  const as = {} as Record<NatsUser, NatsConnection>;
  const violations = {} as Record<NatsUser, () => Promise<readonly string[]>>;
  /** Reply subjects of the orchestrator's requests to acp-policy during a run, by subject. */
  const replies: Array<{ subject: string; reply: string }> = [];
  let runId: string;

  beforeAll(async () => {
    gateway = await startGateway({
      prefix: "loom-bus-scopes-",
      servers: ["time", "crm"],
      tools: ["time.get_time", "crm.get_contact"],
    });
    for (const user of [NatsUser.MCP_WORKER, NatsUser.LLM_AGENT, NatsUser.SUBMITTER, NatsUser.POLICY_ADMIN]) {
      as[user] = await gateway.loom.connectAs(user);
      violations[user] = permissionViolations(as[user]);
    }
    // What a worker could learn of the orchestrator's inboxes: every reply subject it asks on.
    const watching = gateway.loom.observer.subscribe("loom.v1.policy.>", {
      callback: (error, msg) => {
        if (error === null && msg.reply !== undefined)
          replies.push({ subject: msg.subject, reply: msg.reply });
      },
    });
    await gateway.loom.observer.flush();
    const run = await gateway.loom.cli(
      ["submit", "hello", "--input", '{"contactId":"c-1"}', "--watch", "--json"],
      { token: tokenFor("ann", "analyst") },
    );
    watching.unsubscribe();
    expect(run.code, run.stderr).toBe(0);
    runId = JSON.parse(run.stdout.trim().split("\n").at(-1) ?? "{}").runId;
  }, 120_000);
  afterAll(async () => {
    await gateway?.[Symbol.asyncDispose]();
  });

  describe("the orchestrator's inbox: tool tasks are answered on their own", () => {
    it("control - a tool step's task goes out with a reply subject under the tool-task inbox, and the run completes", async () => {
      const tasks = replies.filter(({ subject }) => subject.startsWith("loom.v1.policy.tasks"));
      await control("a run of tool steps completes", async () => typeof runId === "string");
      await control(
        "every tool task names the orchestrator's tool-task inbox",
        async () => tasks.length > 0 && tasks.every(({ reply }) => reply.startsWith(TOOL_TASK_INBOX)),
      );
    });

    it("the mcp-worker answers no other request of the orchestrator's (decisions, reads)", async () => {
      const others = replies
        .map(({ reply }) => reply)
        .filter((reply) => reply.startsWith(ORCHESTRATOR_INBOX) && !reply.startsWith(TOOL_TASK_INBOX));
      expect(others.length).toBeGreaterThan(0);
      const forged = [
        ...new Set(others),
        "_INBOX.orchestrator.forged",
        `_INBOX.orchestrator.${randomUUID().replace(/-/g, "").slice(0, 22)}.1`,
        "_INBOX.orchestrator.tasksx.1",
        "_INBOX.orchestrator.tasks",
      ];
      for (const inbox of forged) {
        await attack(AttackClass.TRUSTED_BUS, `mcp-worker answers the orchestrator on ${inbox}`, async () => {
          as[NatsUser.MCP_WORKER].publish(inbox, JSON.stringify({ effect: "allow", rule: "forged" }));
          return (await violations[NatsUser.MCP_WORKER]()).includes(`publish to ${inbox}`);
        });
      }
    });

    it("the llm agent answers no tool task either: it replies only through the requests it is sent", async () => {
      const inbox = `${TOOL_TASK_INBOX}forged.1`;
      await attack(AttackClass.TRUSTED_BUS, `llm-agent answers a tool task on ${inbox}`, async () => {
        as[NatsUser.LLM_AGENT].publish(inbox, JSON.stringify({ state: "completed" }));
        return (await violations[NatsUser.LLM_AGENT]()).includes(`publish to ${inbox}`);
      });
    });

    it("control - an MCP gateway tools/call is answered by the worker", async () => {
      const session = await gateway.session(tokenFor("ann", "analyst"));
      await control("the gateway's tools/call of time.get_time completes", async () => {
        const result = await session.client.callTool({ name: "time.get_time", arguments: {} });
        return result.isError !== true;
      });
    });
  });

  describe("the submitter lists tools and servers through the orchestrators, never the buckets", () => {
    it.each(LISTED)("the submitter reads nothing of %s", async (stream) => {
      const submitter = as[NatsUser.SUBMITTER];
      const refused = (subject: string, body: unknown) =>
        refusedRequest(submitter, violations[NatsUser.SUBMITTER], subject, body);
      const key = stream === `KV_${Buckets.TOOLS}` ? "crm.get_contact" : "crm";
      const subject = `$KV.${stream.slice("KV_".length)}.${key}`;
      const name = `rt_${randomUUID().slice(0, 8)}`;
      await attack(AttackClass.TRUSTED_BUS, `submitter creates a pull consumer on ${stream}`, () =>
        refused(`$JS.API.CONSUMER.CREATE.${stream}.${name}`, {
          stream_name: stream,
          config: { name, ack_policy: "none" },
        }),
      );
      await attack(
        AttackClass.TRUSTED_BUS,
        `submitter creates a push consumer on ${stream} into LOOM_RUNS`,
        () =>
          refused(`$JS.API.CONSUMER.CREATE.${stream}.${name}_push`, {
            stream_name: stream,
            config: { name: `${name}_push`, ack_policy: "none", deliver_subject: "loom.v1.runs.submit" },
          }),
      );
      await attack(AttackClass.TRUSTED_BUS, `submitter creates an unnamed push consumer on ${stream}`, () =>
        refused(`$JS.API.CONSUMER.CREATE.${stream}`, {
          stream_name: stream,
          config: { ack_policy: "none", deliver_subject: "loom.v1.audit.acp-policy.forged" },
        }),
      );
      await attack(AttackClass.TRUSTED_BUS, `submitter creates a durable on ${stream}`, () =>
        refused(`$JS.API.CONSUMER.DURABLE.CREATE.${stream}.${name}`, {
          stream_name: stream,
          config: { durable_name: name, ack_policy: "none", deliver_subject: "_INBOX.submitter.rt" },
        }),
      );
      await attack(AttackClass.TRUSTED_BUS, `submitter reads ${stream}'s info`, () =>
        refused(`$JS.API.STREAM.INFO.${stream}`, { subjects_filter: ">" }),
      );
      await attack(AttackClass.TRUSTED_BUS, `submitter reads a record of ${stream} (STREAM.MSG.GET)`, () =>
        refused(`$JS.API.STREAM.MSG.GET.${stream}`, { last_by_subj: subject }),
      );
      await attack(AttackClass.TRUSTED_BUS, `submitter reads a record of ${stream} (DIRECT.GET)`, () =>
        refused(`$JS.API.DIRECT.GET.${stream}.${subject}`, undefined),
      );
      await attack(
        AttackClass.TRUSTED_BUS,
        `submitter reads a record of ${stream} as a KV client`,
        async () => {
          const read = await new Kvm(submitter)
            .open(stream.slice("KV_".length))
            .then((kv) => kv.get(key))
            .then(
              (entry) => entry !== null,
              () => false,
            );
          return !read;
        },
      );
      const consumers: string[] = [];
      for await (const info of (await jetstreamManager(gateway.loom.observer)).consumers.list(stream)) {
        consumers.push(info.name);
      }
      expect(consumers.filter((consumer) => consumer.startsWith("rt_"))).toEqual([]);
    });

    it("control - loom tools list and loom servers list show the demo servers", async () => {
      await control("loom tools list shows crm.get_contact and time.get_time, with health", async () => {
        const listed = await gateway.loom.cli(["tools", "list", "--json"]);
        const tools = JSON.parse(listed.stdout) as Array<{ server: string; name: string; health: string }>;
        const names = tools.map((tool) => `${tool.server}.${tool.name}`);
        return (
          listed.code === 0 &&
          names.includes("crm.get_contact") &&
          names.includes("time.get_time") &&
          tools.every((tool) => tool.health === "up")
        );
      });
      await control("loom tools list prints its table", async () => {
        const listed = await gateway.loom.cli(["tools", "list"]);
        return (
          listed.code === 0 && /^crm\.get_contact\s+restricted\s+write\s+sales-ops\s+up/m.test(listed.stdout)
        );
      });
      await control("loom servers list shows crm and time up", async () => {
        const listed = await gateway.loom.cli(["servers", "list"]);
        return listed.code === 0 && /^crm\s+up\s/m.test(listed.stdout) && /^time\s+up\s/m.test(listed.stdout);
      });
    });
  });

  describe("policy-admin reads the info of the streams its commands read, no other", () => {
    it("policy-admin lists no stream and reads no other stream's subjects", async () => {
      const admin = as[NatsUser.POLICY_ADMIN];
      const refused = (subject: string, body: unknown) =>
        refusedRequest(admin, violations[NatsUser.POLICY_ADMIN], subject, body);
      for (const stream of NOT_ADMIN_READS) {
        await attack(AttackClass.TRUSTED_BUS, `policy-admin reads ${stream}'s subjects (STREAM.INFO)`, () =>
          refused(`$JS.API.STREAM.INFO.${stream}`, { subjects_filter: ">" }),
        );
      }
      await attack(AttackClass.TRUSTED_BUS, "policy-admin lists every stream's info (STREAM.LIST)", () =>
        refused("$JS.API.STREAM.LIST", {}),
      );
      await attack(AttackClass.TRUSTED_BUS, "policy-admin lists every stream's name (STREAM.NAMES)", () =>
        refused("$JS.API.STREAM.NAMES", {}),
      );
    });

    it("control - policy apply, audit tail and verify, and runs trace work as policy-admin", async () => {
      await control("policy-admin reads LOOM_AUDIT's info", async () => {
        const info = await (await jetstreamManager(as[NatsUser.POLICY_ADMIN])).streams.info(Streams.AUDIT);
        return info.state.messages > 0;
      });
      await control("loom policy apply", async () => {
        const applied = await gateway.loom.cli(["policy", "apply", "infra/policies/default.yaml"]);
        return applied.code === 0;
      });
      await control("loom audit tail", async () => {
        const tail = await gateway.loom.cli(["audit", "tail", "--run", runId, "--json"]);
        return tail.code === 0 && tail.stdout.includes(runId);
      });
      await control("loom audit verify says intact", async () => {
        const verified = await gateway.loom.cli(["audit", "verify"]);
        return verified.code === 0 && verified.stdout.includes("intact");
      });
      await control("loom runs trace", async () => {
        const traced = await gateway.loom.cli(["runs", "trace", runId, "--json"], {
          token: tokenFor("ann", "analyst"),
        });
        return traced.code === 0 && traced.stdout.includes(runId);
      });
    });
  });
});
