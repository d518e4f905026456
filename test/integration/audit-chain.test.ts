import { jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AuditKind } from "../../schemas/audit.ts";
import { Streams } from "../../schemas/subjects.ts";
import { type StoredRecord, verifyChain } from "../../services/cli/commands/audit.ts";
import { AuditLog } from "../../services/kit/audit-chain.ts";
import { connectTo, type NatsServer, startNatsServer } from "../helpers/nats-server.ts";

async function stored(nc: NatsConnection): Promise<StoredRecord[]> {
  const jsm = await jetstreamManager(nc);
  const { state } = await jsm.streams.info(Streams.AUDIT);
  const records: StoredRecord[] = [];
  for (let seq = 1; seq <= state.last_seq; seq++) {
    const message = await jsm.streams.getMessage(Streams.AUDIT, { seq });
    if (message !== null) records.push({ seq, data: message.data });
  }
  return records;
}

describe("audit hash chain over a real nats-server", () => {
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

  it("audit - two services appending at once still form one unbroken chain", async () => {
    const policy = new AuditLog(a, "acp-policy", 1);
    const worker = new AuditLog(b, "mcp-worker", 1);
    const entry = (i: number) => ({
      kind: AuditKind.TOOL_EXECUTION,
      principal: "ann",
      resource: "crm.get_contact",
      outcome: "ok",
      runId: `run-${i}`,
    });
    await Promise.all(Array.from({ length: 40 }, (_, i) => (i % 2 === 0 ? policy : worker).append(entry(i))));
    const report = verifyChain(await stored(a));
    expect(report).toMatchObject({ records: 40 });
    expect(report.broken).toBeUndefined();
  });

  it("audit - verify names the first edited record, and a record whose link is wrong", () => {
    const encode = (value: unknown) => new TextEncoder().encode(JSON.stringify(value));
    return stored(a).then((records) => {
      const [first, second, third] = records.map((record) =>
        JSON.parse(new TextDecoder().decode(record.data)),
      );
      const edited = [
        { seq: 1, data: encode(first) },
        { seq: 2, data: encode({ ...second, outcome: "TOOL_ERROR" }) },
        { seq: 3, data: encode(third) },
      ];
      expect(verifyChain(edited).broken).toMatchObject({ seq: 2, problem: expect.stringMatching(/hash/) });
      const skipped = [
        { seq: 1, data: encode(first) },
        { seq: 2, data: encode(third) },
      ];
      expect(verifyChain(skipped).broken).toMatchObject({ seq: 2, problem: expect.stringMatching(/link/) });
      const gap = [
        { seq: 1, data: encode(first) },
        { seq: 3, data: encode(third) },
      ];
      expect(verifyChain(gap).broken).toMatchObject({ seq: 3, problem: expect.stringMatching(/missing/) });
    });
  });
});
