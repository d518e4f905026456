import { setTimeout as sleep } from "node:timers/promises";
import { jetstreamManager } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AuditKind, auditKeyName } from "../../schemas/audit.ts";
import { ErrorCode } from "../../schemas/errors.ts";
import { Buckets, bucketStream } from "../../schemas/subjects.ts";
import { describeAudit } from "../../services/cli/commands/audit.ts";
import { AuditLog } from "../../services/kit/audit-chain.ts";
import { type StoredRecord, verifyAudit } from "../../services/kit/audit-verify.ts";
import { LoomError } from "../../services/kit/errors.ts";
import { makeBucketWriteOnce, writeOnceProblems } from "../../services/kit/jetstream.ts";
import { pinnedKeys, storedAudit } from "../helpers/audit.ts";
import { connectTo, type NatsServer, startNatsServer } from "../helpers/nats-server.ts";

const entry = (i: number) => ({
  kind: AuditKind.TOOL_EXECUTION,
  principal: "ann",
  resource: "crm.get_contact",
  outcome: "ok",
  runId: `run-${i}`,
});

describe("audit - signed chains, one per writer, over a real nats-server", () => {
  let ns: NatsServer;
  let a: NatsConnection;
  let b: NatsConnection;
  beforeAll(async () => {
    ns = await startNatsServer();
    a = await connectTo(ns.url);
    b = await connectTo(ns.url);
  });
  afterAll(async () => {
    await Promise.all([a?.close(), b?.close()]);
    await ns?.[Symbol.asyncDispose]();
  });

  it("audit - two services appending at once each keep an intact chain, and verify reports both", async () => {
    const policy = new AuditLog(a, "acp-policy", 1);
    const worker = new AuditLog(b, "mcp-worker", 1);
    await Promise.all(Array.from({ length: 40 }, (_, i) => (i % 2 === 0 ? policy : worker).append(entry(i))));
    const report = await verifyAudit(await storedAudit(a), await pinnedKeys(a));
    expect(report).toMatchObject({ records: 40, intact: true, stream: [], pinsReplaceable: [] });
    expect(report.writers.map((w) => [w.service, w.records, w.status])).toEqual([
      ["acp-policy", 20, "intact"],
      ["mcp-worker", 20, "intact"],
    ]);
  });

  it("audit - a malformed entry is refused on append and takes no place in the chain", async () => {
    await using server = await startNatsServer();
    const nc = await connectTo(server.url);
    try {
      const log = new AuditLog(nc, "mcp-worker", 1);
      const refused = await log.append({ ...entry(1), argsDigest: "not a digest" }).catch((error) => error);
      expect(refused).toBeInstanceOf(LoomError);
      expect(refused).toMatchObject({
        code: ErrorCode.INTERNAL,
        message: expect.stringMatching(/argsDigest/),
      });
      const stored = await log.append(entry(2));
      expect(stored).toMatchObject({ seq: 1, runId: "run-2" });
      const report = await verifyAudit(await storedAudit(nc), await pinnedKeys(nc));
      expect(report).toMatchObject({ records: 1, intact: true });
    } finally {
      await nc.close();
    }
  });

  it("audit - verify names an edited record, a dropped record and a replayed one, per writer", async () => {
    const records = await storedAudit(a);
    const keys = await pinnedKeys(a);
    const decode = (record: StoredRecord) => JSON.parse(new TextDecoder().decode(record.data));
    const encode = (value: unknown) => new TextEncoder().encode(JSON.stringify(value));
    const policyRecords = records.filter((record) => record.subject.startsWith("loom.v1.audit.acp-policy."));
    const [first, second, third] = policyRecords as [StoredRecord, StoredRecord, StoredRecord];
    const edited = [first, { ...second, data: encode({ ...decode(second), outcome: "TOOL_ERROR" }) }, third];
    expect((await verifyAudit(edited, keys)).writers[0]).toMatchObject({
      status: "broken",
      broken: { seq: 2, problem: expect.stringMatching(/hash/) },
    });
    const dropped = [first, { ...third, seq: 2 }];
    expect((await verifyAudit(dropped, keys)).writers[0]).toMatchObject({
      status: "broken",
      broken: { seq: 3, problem: expect.stringMatching(/missing/) },
    });
    const replayed = [first, second, { ...first, seq: 3 }, { ...third, seq: 4 }];
    expect((await verifyAudit(replayed, keys)).writers[0]).toMatchObject({
      status: "broken",
      broken: { seq: 1, problem: expect.stringMatching(/twice/) },
    });
    const unpinned = await verifyAudit(policyRecords, { ...keys, pins: new Map() });
    expect(unpinned.writers[0]).toMatchObject({ status: "unknown signer" });
  });

  it("audit - a pins bucket made the old way is left as it is, verify says its pins are replaceable, and the operator locks them in place", async () => {
    await using server = await startNatsServer();
    const nc = await connectTo(server.url);
    try {
      await new Kvm(nc).create(Buckets.AUDIT_KEYS, { history: 1 });
      const stream = bucketStream(Buckets.AUDIT_KEYS);
      const jsm = await jetstreamManager(nc);
      const before = (await jsm.streams.info(stream)).config;
      const log = new AuditLog(nc, "acp-policy", 1);
      await log.append(entry(0));
      expect((await jsm.streams.info(stream)).config).toEqual(before);
      const report = await verifyAudit(await storedAudit(nc), await pinnedKeys(nc));
      expect(report).toMatchObject({ records: 1, intact: true });
      expect(report.pinsReplaceable).toEqual([
        "a second write to a key replaces the first (discard_new_per_subject is off)",
        "its messages may be deleted (deny_delete is off)",
        "its keys may be purged (deny_purge is off)",
      ]);
      expect(describeAudit(report).at(-2)).toMatch(/^pins: REPLACEABLE, .*loom streams lock-pins/);

      expect(await makeBucketWriteOnce(jsm, Buckets.AUDIT_KEYS)).toBe(true);
      const locked = await verifyAudit(await storedAudit(nc), await pinnedKeys(nc));
      expect(locked).toMatchObject({ records: 1, intact: true, pinsReplaceable: [] });
      const kv = await new Kvm(nc).open(Buckets.AUDIT_KEYS);
      const key = auditKeyName("acp-policy", log.writer);
      const pinned = await kv.get(key);
      await expect(kv.put(key, "{}")).rejects.toThrow(/maximum messages per subject/);
      expect((await kv.get(key))?.revision).toBe(pinned?.revision);
      expect(await makeBucketWriteOnce(jsm, Buckets.AUDIT_KEYS)).toBe(false);
    } finally {
      await nc.close();
    }
  });

  it("audit - a new pins bucket is write-once and verify says nothing of replaceable pins", async () => {
    const jsm = await jetstreamManager(a);
    expect(writeOnceProblems((await jsm.streams.info(bucketStream(Buckets.AUDIT_KEYS))).config)).toEqual([]);
    expect(
      describeAudit(await verifyAudit(await storedAudit(a), await pinnedKeys(a))).join("\n"),
    ).not.toMatch(/REPLACEABLE/);
  });

  it("audit - appends made while the broker is SIGKILLed are stored once it is back, each once, the chain intact", async () => {
    await using server = await startNatsServer();
    const nc = await connectTo(server.url, { maxReconnectAttempts: -1 });
    try {
      const log = new AuditLog(nc, "acp-policy", 1);
      // Control: the key is pinned and a first record stored while the broker is up.
      await log.append(entry(0));
      await sleep(500);
      await server.kill();
      const during = Array.from({ length: 20 }, (_, i) => log.append(entry(i + 1)));
      await sleep(1_000);
      await server.restart();
      const stored = await Promise.all(during);
      expect(stored.map((record) => record.seq)).toEqual(Array.from({ length: 20 }, (_, i) => i + 2));
      const report = await verifyAudit(await storedAudit(nc), await pinnedKeys(nc));
      expect(report).toMatchObject({ records: 21, intact: true });
      expect(report.writers.map((w) => [w.service, w.records, w.status])).toEqual([
        ["acp-policy", 21, "intact"],
      ]);
    } finally {
      await nc.close();
    }
  }, 60_000);
});
