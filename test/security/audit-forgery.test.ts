import { execFile } from "node:child_process";
import { generateKeyPairSync, randomUUID, sign } from "node:crypto";
import { join } from "node:path";
import { promisify } from "node:util";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { type KV, type KvEntry, Kvm } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { AuditReport } from "../../schemas/audit.ts";
import { AuditKind, type AuditRecord, AuditRecordSchema, auditKeyName } from "../../schemas/audit.ts";
import { auditSubject, Buckets, bucketKeySubject, bucketStream, Streams } from "../../schemas/subjects.ts";
import { waitUntilReady } from "../../services/cli/stack.ts";
import { auditHash } from "../../services/kit/audit-chain.ts";
import { AttackClass, attack, control } from "../helpers/attack-tally.ts";
import { pinnedKeys, storedAudit } from "../helpers/audit.ts";
import { eventually } from "../helpers/eventually.ts";
import { REPO_ROOT } from "../helpers/loom.ts";
import { type SecureStack, startSecureStack } from "../helpers/secure-stack.ts";

const run = promisify(execFile);

/**
 * The audit trail against insiders: each other service's NATS user writing in acp-policy's name,
 * an edited record, a replayed one, a chain signed by a key nobody pinned, a pin overwritten. Each
 * is refused at the bus or named by `loom audit verify`. And a tool call never runs without its
 * decision on record, even when acp-policy is SIGKILLed between deciding and the call.
 */
describe("security - audit forgery against a stack with a NATS user per service", () => {
  let loom: SecureStack;
  let orchestrator: NatsConnection;

  /** `loom audit verify --json` as the operators' user. */
  const verify = async (): Promise<AuditReport> => {
    const { stdout } = await run(
      process.execPath,
      [
        join(REPO_ROOT, "services/cli/bin.ts"),
        "--nats",
        loom.nats.urlAs("policy-admin"),
        "audit",
        "verify",
        "--json",
      ],
      { cwd: REPO_ROOT, timeout: 30_000 },
    ).catch((error: { stdout: string }) => ({ stdout: error.stdout }));
    return JSON.parse(stdout.trim().split("\n").at(-1) ?? "{}") as AuditReport;
  };
  const writerOf = (report: AuditReport, service: string, writer?: string) =>
    report.writers.find(
      (entry) => entry.service === service && (writer === undefined || entry.writer === writer),
    );
  const records = async (nc: NatsConnection): Promise<AuditRecord[]> =>
    (await storedAudit(nc)).map(({ data }) =>
      AuditRecordSchema.parse(JSON.parse(new TextDecoder().decode(data))),
    );
  /** Publishes `record` as `nc` on `subject`; true when the bus refused it. */
  const refusedPublish = async (nc: NatsConnection, subject: string, record: unknown) => {
    try {
      await jetstream(nc).publish(subject, JSON.stringify(record), { timeout: 3_000 });
      return false;
    } catch {
      return true;
    }
  };
  /** A record for `writer`, chained after `previous`, signed with a key of the forger's own. */
  const forge = (base: AuditRecord, changes: Partial<AuditRecord>): AuditRecord => {
    const { privateKey } = generateKeyPairSync("ed25519");
    const { hash: _hash, sig: _sig, ...rest } = { ...base, id: randomUUID(), ...changes };
    const hash = auditHash(rest);
    return { ...rest, hash, sig: sign(null, Buffer.from(hash, "hex"), privateKey).toString("base64url") };
  };

  /** A public key of nobody's, as a pin holds it. */
  const freshPublicKey = () =>
    generateKeyPairSync("ed25519").publicKey.export({ format: "der", type: "spki" }).toString("base64");
  /** The pin under `key` is still `genuine`: same revision, same bytes. */
  const pinUnchanged = async (kv: KV, key: string, genuine: KvEntry) => {
    const now = await kv.get(key);
    return now?.operation === "PUT" && now.revision === genuine.revision && now.string() === genuine.string();
  };

  beforeAll(async () => {
    loom = await startSecureStack();
    orchestrator = await loom.as("orchestrator");
  }, 90_000);
  afterAll(async () => {
    await loom?.[Symbol.asyncDispose]();
  });

  it("audit - a SIGKILL of acp-policy between decision and execution: the call runs with its decision on record", async () => {
    const runId = `kill-${randomUUID()}`;
    const decision = await loom.decideRead(orchestrator, runId, "g-9");
    loom.stacks[0]?.services[0]?.process.kill("SIGKILL");
    const before = await loom.executions();
    await control("the granted call runs although acp-policy is dead", async () => {
      return (await loom.sendTask({ runId, id: "g-9", attempt: 1, grant: decision.grant })) === "ok";
    });
    expect(await loom.executions()).toBe(before + 1);
    await attack(AttackClass.AUDIT_FORGERY, "no execution without its decision durable first", async () => {
      const all = await records(orchestrator);
      const decided = all.findIndex(
        (record) => record.kind === AuditKind.POLICY_DECISION && record.grant === decision.grant,
      );
      const executed = all.findIndex(
        (record) => record.kind === AuditKind.TOOL_EXECUTION && record.runId === runId,
      );
      return decided >= 0 && executed > decided && all[decided]?.service === "acp-policy";
    });
    await loom.stacks[0]?.restart("acp-policy");
    await waitUntilReady(orchestrator, { tools: ["gauges.read_gauge"], timeoutMs: 30_000 });
    await control("verify: every writer intact after the kill", async () => (await verify()).intact);
  });

  it("audit - each service's user cannot replace, delete or purge its own service's pins; a restarted service pins a new writer", async () => {
    const reader = await pinnedKeys(orchestrator);
    await control("the stack's pins bucket is write-once", async () => reader.pinsReplaceable.length === 0);
    const all = await records(orchestrator);
    for (const service of ["acp-policy", "mcp-worker", "llm-agent"] as const) {
      // A pin whose writer has records where there is one (the chain verify must keep intact).
      const writer =
        all.findLast((record) => record.service === service)?.writer ??
        [...reader.pins.values()].find((pin) => pin.service === service)?.writer;
      expect(writer, `a pin of ${service}`).toBeDefined();
      const key = auditKeyName(service, writer as string);
      const nc = await loom.as(service);
      const kv = await new Kvm(nc).open(Buckets.AUDIT_KEYS);
      const genuine = await kv.get(key);
      expect(genuine?.operation).toBe("PUT");
      const forged = JSON.stringify({ ...(genuine?.json() as object), publicKey: freshPublicKey() });
      /** True when every write threw and the pin is still the genuine one. */
      const refused = async (...writes: (() => Promise<unknown>)[]) => {
        for (const write of writes) {
          const threw = await write().then(
            () => false,
            () => true,
          );
          if (!threw) return false;
        }
        return pinUnchanged(kv, key, genuine as KvEntry);
      };
      const as = `${service} user`;
      await attack(AttackClass.AUDIT_FORGERY, `${as}: KV put over its own service's pin`, () =>
        refused(() => kv.put(key, forged)),
      );
      await attack(AttackClass.AUDIT_FORGERY, `${as}: KV update of its pin at the right revision`, () =>
        refused(() => kv.update(key, forged, genuine?.revision as number)),
      );
      await attack(AttackClass.AUDIT_FORGERY, `${as}: JetStream publish on its pin's subject`, () =>
        refused(() =>
          jetstream(nc).publish(bucketKeySubject(Buckets.AUDIT_KEYS, key), forged, { timeout: 3_000 }),
        ),
      );
      await attack(
        AttackClass.AUDIT_FORGERY,
        `${as}: core publish (no ack) on its pin's subject`,
        async () => {
          nc.publish(bucketKeySubject(Buckets.AUDIT_KEYS, key), forged);
          await nc.flush();
          return pinUnchanged(kv, key, genuine as KvEntry);
        },
      );
      await attack(AttackClass.AUDIT_FORGERY, `${as}: KV delete of its pin, then put`, () =>
        refused(
          () => kv.delete(key),
          () => kv.put(key, forged),
        ),
      );
      await attack(AttackClass.AUDIT_FORGERY, `${as}: KV purge of its pin, then create`, () =>
        refused(
          () => kv.purge(key),
          () => kv.create(key, forged),
        ),
      );
      await attack(
        AttackClass.AUDIT_FORGERY,
        `${as}: re-creating the pins bucket as an ordinary one`,
        async () => {
          const jsm = await jetstreamManager(nc);
          const { config } = await jsm.streams.info(bucketStream(Buckets.AUDIT_KEYS));
          return refused(() =>
            jsm.streams.add({
              ...config,
              discard_new_per_subject: false,
              deny_delete: false,
              deny_purge: false,
              allow_rollup_hdrs: true,
            }),
          );
        },
      );
      await control(`${service}: its writer's chain still verifies intact`, async () => {
        const report = await verify();
        const chain = writerOf(report, service, writer);
        return report.pinsReplaceable.length === 0 && (chain === undefined || chain.status === "intact");
      });
    }

    const before = await pinnedKeys(orchestrator);
    const workerStack = loom.stacks.find((stack) => stack.services.some(({ name }) => name === "mcp-worker"));
    await workerStack?.restart("mcp-worker");
    await waitUntilReady(orchestrator, { tools: ["gauges.read_gauge"], timeoutMs: 30_000 });
    const runId = `restart-${randomUUID()}`;
    const decision = await loom.decideRead(orchestrator, runId, "g-2");
    expect(await loom.sendTask({ runId, id: "g-2", attempt: 1, grant: decision.grant })).toBe("ok");
    // The execution record goes out after the reply, with the writer's next batch.
    const execution = await eventually(
      async () =>
        (await records(orchestrator)).findLast(
          (record) => record.kind === AuditKind.TOOL_EXECUTION && record.runId === runId,
        ),
      (found) => found !== undefined,
    );
    await control(
      "a restarted worker is a new writer: it pins a new key and its records verify",
      async () => {
        const key = auditKeyName("mcp-worker", execution?.writer as string);
        const after = await pinnedKeys(orchestrator);
        const oldKeys = [...before.pins.values()].filter((pin) => pin.service === "mcp-worker");
        return (
          !before.pins.has(key) &&
          after.pins.has(key) &&
          oldKeys.every((pin) => pin.publicKey !== after.pins.get(key)?.publicKey) &&
          writerOf(await verify(), "mcp-worker", execution?.writer)?.status === "intact"
        );
      },
    );
  });

  it("audit - forgeries in acp-policy's name by each other service user are refused or named", async () => {
    await loom.decideRead(orchestrator, `warm-${randomUUID()}`, "g-1");
    const all = await records(orchestrator);
    const policyRecord = all.findLast((record) => record.service === "acp-policy") as AuditRecord;
    const workerRecord = all.find((record) => record.service === "mcp-worker") as AuditRecord;
    expect(policyRecord).toBeDefined();
    const policyWriter = policyRecord.writer;
    const allow = forge(policyRecord, {
      kind: AuditKind.POLICY_DECISION,
      effect: "allow",
      resource: "crm.delete_record",
      principal: "root",
      seq: policyRecord.seq + 50,
    });

    for (const user of ["orchestrator", "mcp-worker", "llm-agent", "submitter"] as const) {
      const nc = await loom.as(user);
      await attack(
        AttackClass.AUDIT_FORGERY,
        `${user} appending "allow root delete" to acp-policy's chain is refused`,
        () => refusedPublish(nc, auditSubject("acp-policy", policyWriter), allow),
      );
      await attack(
        AttackClass.AUDIT_FORGERY,
        `${user} pinning a key in acp-policy's name is refused`,
        async () => {
          try {
            const kv = await new Kvm(nc).open(Buckets.AUDIT_KEYS);
            await kv.put(
              `acp-policy.forged-${user}`,
              JSON.stringify({
                service: "acp-policy",
                writer: `forged-${user}`,
                publicKey: "AAAA",
                createdAt: new Date().toISOString(),
              }),
            );
            return false;
          } catch {
            return true;
          }
        },
      );
      await attack(
        AttackClass.AUDIT_FORGERY,
        `${user} overwriting acp-policy's pinned key is refused`,
        async () => {
          try {
            const kv = await new Kvm(nc).open(Buckets.AUDIT_KEYS);
            await kv.put(`acp-policy.${policyWriter}`, "{}");
            return false;
          } catch {
            return true;
          }
        },
      );
    }
    for (const user of ["mcp-worker", "llm-agent"] as const) {
      const nc = await loom.as(user);
      const writer = `posing-${user}`;
      await attack(
        AttackClass.AUDIT_FORGERY,
        `${user} writing "acp-policy" records on its own subject is named by verify`,
        async () => {
          const forged = forge(policyRecord, {
            writer,
            seq: 1,
            prevHash: "0".repeat(64),
            effect: "allow",
            principal: "root",
          });
          const stored = !(await refusedPublish(nc, auditSubject(user, writer), forged));
          const report = await verify();
          return (
            !stored || (!report.intact && writerOf(report, "acp-policy", writer)?.status === "unknown signer")
          );
        },
      );
    }
    await control("the real acp-policy and mcp-worker chains stay intact", async () => {
      const report = await verify();
      return (
        writerOf(report, "acp-policy", policyWriter)?.status === "intact" &&
        writerOf(report, "mcp-worker")?.status === "intact"
      );
    });

    const worker = await loom.as("mcp-worker");
    await attack(
      AttackClass.AUDIT_FORGERY,
      "deleting a record from the audit stream is refused",
      async () => {
        try {
          await (await jetstreamManager(worker)).streams.deleteMessage(Streams.AUDIT, 1);
          return false;
        } catch {
          return true;
        }
      },
    );
    await attack(
      AttackClass.AUDIT_FORGERY,
      "a record re-appended (replayed) by its own service user is named",
      async () => {
        await jetstream(worker).publish(
          auditSubject("mcp-worker", workerRecord.writer),
          JSON.stringify(workerRecord),
        );
        const report = await verify();
        return writerOf(report, "mcp-worker", workerRecord.writer)?.status === "broken";
      },
    );

    const policy = await loom.as("acp-policy");
    const chainWriter = "resigned";
    await attack(
      AttackClass.AUDIT_FORGERY,
      "a whole chain signed with a key nobody pinned is an unknown signer",
      async () => {
        const first = forge(policyRecord, { writer: chainWriter, seq: 1, prevHash: "0".repeat(64) });
        await jetstream(policy).publish(auditSubject("acp-policy", chainWriter), JSON.stringify(first));
        return writerOf(await verify(), "acp-policy", chainWriter)?.status === "unknown signer";
      },
    );
    await attack(
      AttackClass.AUDIT_FORGERY,
      "an edited record appended to acp-policy's chain is named",
      async () => {
        const live = (await records(orchestrator)).findLast(
          (record) => record.writer === policyWriter,
        ) as AuditRecord;
        const edited = forge(live, {
          seq: live.seq + 1,
          prevHash: live.hash,
          effect: "allow",
          principal: "root",
        });
        await jetstream(policy).publish(auditSubject("acp-policy", policyWriter), JSON.stringify(edited));
        const report = await verify();
        return writerOf(report, "acp-policy", policyWriter)?.status === "broken" && !report.intact;
      },
    );
  });
});
