import { jetstreamManager } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/transport-node";
import { type AuditKeyPin, AuditKeyPinSchema } from "../../schemas/audit.ts";
import { Buckets, Streams } from "../../schemas/subjects.ts";
import { type AuditKeys, pinBucketProblems, type StoredRecord } from "../../services/kit/audit-verify.ts";

/** Every stored audit message, in stream order. */
export async function storedAudit(nc: NatsConnection): Promise<StoredRecord[]> {
  const jsm = await jetstreamManager(nc);
  const { state } = await jsm.streams.info(Streams.AUDIT);
  const records: StoredRecord[] = [];
  for (let seq = 1; seq <= state.last_seq; seq++) {
    const message = await jsm.streams.getMessage(Streams.AUDIT, { seq });
    if (message !== null) records.push({ seq, subject: message.subject, data: message.data });
  }
  return records;
}

/** The pinned writer keys as `loom audit verify` reads them; no grant keys in this test. */
export async function pinnedKeys(nc: NatsConnection): Promise<AuditKeys> {
  const pinsReplaceable = await pinBucketProblems(await jetstreamManager(nc));
  const kv = await new Kvm(nc).open(Buckets.AUDIT_KEYS);
  const pins = new Map<string, AuditKeyPin>();
  for await (const key of await kv.keys()) {
    const entry = await kv.get(key);
    if (entry?.operation === "PUT") pins.set(key, AuditKeyPinSchema.parse(entry.json()));
  }
  return { pins, pinsReplaceable, grantKey: async () => undefined };
}
