import { generateKeyPairSync, randomUUID, sign } from "node:crypto";
import { jetstream } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  AuditKind,
  type AuditRecord,
  AuditRecordSchema,
  type AuditWriterReport,
} from "../../schemas/audit.ts";
import { auditSubject } from "../../schemas/subjects.ts";
import { AuditLog, auditHash } from "../../services/kit/audit-chain.ts";
import { verifyAudit } from "../../services/kit/audit-verify.ts";
import { AttackClass, attack, control } from "../helpers/attack-tally.ts";
import { pinnedKeys, storedAudit } from "../helpers/audit.ts";
import { NatsUser, type NatsUsersServer, startNatsWithUsers } from "../helpers/nats-users.ts";

const SERVICE = "mcp-worker";

const entry = (n: number) => ({
  kind: AuditKind.TOOL_EXECUTION,
  principal: "ann",
  action: "tools.call" as const,
  resource: "crm.get_contact",
  outcome: "ok",
  runId: `run-${n}`,
});

/**
 * A writer signs only the last record of each batch it publishes: the chain carries that
 * signature back over the batch. Against the writer's own NATS user (an insider with the worker's
 * password): a record appended without a signature, one slipped in before the writer's next, and
 * one signed with a key of the forger's own are each named by verify, never covered by a later
 * signature; a writer's own batches stay intact.
 */
describe("security - audit records signed per batch, against the writer's own NATS user", () => {
  let users: NatsUsersServer;
  let worker: NatsConnection;
  let insider: NatsConnection;
  let operator: NatsConnection;

  beforeAll(async () => {
    users = await startNatsWithUsers();
    worker = await users.connectAs(NatsUser.MCP_WORKER);
    insider = await users.connectAs(NatsUser.MCP_WORKER);
    operator = await users.connectAs(NatsUser.POLICY_ADMIN);
  });
  afterAll(async () => {
    await Promise.all([worker?.close(), insider?.close(), operator?.close()]);
    await users?.[Symbol.asyncDispose]();
  });

  /** Every stored record of `writer`, in its chain's order. */
  const chainOf = async (writer: string): Promise<AuditRecord[]> =>
    (await storedAudit(operator))
      .filter((stored) => stored.subject === auditSubject(SERVICE, writer))
      .map((stored) => AuditRecordSchema.parse(JSON.parse(new TextDecoder().decode(stored.data))));
  const reportOf = async (writer: string): Promise<AuditWriterReport | undefined> =>
    (await verifyAudit(await storedAudit(operator), await pinnedKeys(operator))).writers.find(
      (report) => report.writer === writer,
    );
  /** A writer with `count` records appended at once: batches form while one is in flight. */
  const writerWith = async (count: number): Promise<AuditLog> => {
    const log = new AuditLog(worker, SERVICE, 1);
    await Promise.all(Array.from({ length: count }, (_, n) => log.append(entry(n))));
    return log;
  };
  /** The next record of `writer`'s chain as the insider makes it: chained right, signed by `key` or by nobody. */
  const next = (last: AuditRecord, key?: Parameters<typeof sign>[2]): AuditRecord => {
    const {
      hash: _hash,
      sig: _sig,
      ...rest
    } = {
      ...last,
      id: randomUUID(),
      principal: "root",
      resource: "crm.delete_record",
      seq: last.seq + 1,
      prevHash: last.hash,
    };
    const hash = auditHash(rest);
    return key === undefined
      ? { ...rest, hash }
      : { ...rest, hash, sig: sign(null, Buffer.from(hash, "hex"), key).toString("base64url") };
  };
  const append = (writer: string, record: AuditRecord) =>
    jetstream(insider).publish(auditSubject(SERVICE, writer), JSON.stringify(record));

  it("audit - records appended at once share a signature and verify intact; every forgery after them is named", async () => {
    const honest = await writerWith(60);
    const chain = await chainOf(honest.writer);
    await control("60 records at once: fewer signatures than records, the chain intact", async () => {
      const signed = chain.filter((record) => record.sig !== undefined).length;
      return (
        chain.length === 60 &&
        signed < 60 &&
        chain.at(-1)?.sig !== undefined &&
        (await reportOf(honest.writer))?.status === "intact"
      );
    });
    expect(chain.filter((record) => record.sig !== undefined).length).toBeLessThan(60);

    const unsignedTail = await writerWith(5);
    await attack(
      AttackClass.AUDIT_FORGERY,
      "an unsigned record appended after the writer's last is named, not covered",
      async () => {
        await append(unsignedTail.writer, next((await chainOf(unsignedTail.writer)).at(-1) as AuditRecord));
        const report = await reportOf(unsignedTail.writer);
        return report?.status === "broken" && /signed by no later record/.test(report.broken?.problem ?? "");
      },
    );

    const slippedIn = await writerWith(5);
    await attack(
      AttackClass.AUDIT_FORGERY,
      "an unsigned record slipped in before the writer's next batch is named",
      async () => {
        await append(slippedIn.writer, next((await chainOf(slippedIn.writer)).at(-1) as AuditRecord));
        // The writer goes on with its own records, whose signature would cover the forged one
        // if the chain let it in.
        await Promise.all(Array.from({ length: 3 }, (_, n) => slippedIn.append(entry(100 + n))));
        return (await reportOf(slippedIn.writer))?.status === "broken";
      },
    );

    const ownKey = await writerWith(5);
    await attack(
      AttackClass.AUDIT_FORGERY,
      "an unsigned record followed by one signed with the forger's own key is named",
      async () => {
        const { privateKey } = generateKeyPairSync("ed25519");
        const unsigned = next((await chainOf(ownKey.writer)).at(-1) as AuditRecord);
        await append(ownKey.writer, unsigned);
        await append(ownKey.writer, next(unsigned, privateKey));
        const report = await reportOf(ownKey.writer);
        return report?.status === "broken" && /not signed by the key/.test(report.broken?.problem ?? "");
      },
    );

    await control("the honest writer's chain is still intact beside the forged ones", async () => {
      return (await reportOf(honest.writer))?.status === "intact";
    });
  });
});
