import {
  DeliverPolicy,
  JetStreamApiCodes,
  JetStreamApiError,
  type JetStreamManager,
  jetstream,
  jetstreamManager,
} from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/transport-node";
import { type CryptoKey, compactVerify, decodeProtectedHeader, importJWK, type JWK } from "jose";
import {
  type AuditKeyPin,
  AuditKeyPinSchema,
  AuditKind,
  type AuditRecord,
  AuditRecordSchema,
  type AuditReport,
  type AuditWriterReport,
  auditKeyName,
  GENESIS_HASH,
} from "../../schemas/audit.ts";
import { ErrorCode } from "../../schemas/errors.ts";
import { GRANT_TYPE } from "../../schemas/policy.ts";
import { auditSubject, Buckets, bucketStream, Streams } from "../../schemas/subjects.ts";
import { auditHash, auditSignatureValid } from "./audit-chain.ts";
import { LoomError } from "./errors.ts";
import { writeOnceProblems } from "./jetstream.ts";

/*
 * Verifying the audit trail: what `loom audit verify` and the console's audit page both run, so
 * both say the same about every writer's chain.
 */

/** One stored message of `LOOM_AUDIT`. */
export interface StoredRecord {
  seq: number;
  subject: string;
  data: Uint8Array;
}

/** How `verifyAudit` finds keys: the writers' pins, and acp-policy's grant keys by kid. */
export interface AuditKeys {
  pins: ReadonlyMap<string, AuditKeyPin>;
  /** Why the pins bucket lets a pin be replaced (`writeOnceProblems`); empty when it is write-once. */
  pinsReplaceable: string[];
  grantKey: (kid: string) => Promise<Uint8Array | CryptoKey | undefined>;
}

/**
 * Checks every writer's chain: each record parses, was published on its writer's subject, carries
 * the hash of its own content, is signed by the key pinned for the service and writer it names, or
 * is followed in the chain by a record so signed (a writer signs the last record of each batch,
 * and the chain links every record before it to that signature), so the service it claims is the
 * one that signed it; it links to the writer's record before it,
 * and the writer's numbers run 1, 2, 3 without a gap or a repeat. A record carrying a grant (or
 * admitting one) must carry a grant acp-policy signed. The stream's own sequences must have no
 * gaps (deletes are denied).
 */
export async function verifyAudit(stored: Iterable<StoredRecord>, keys: AuditKeys): Promise<AuditReport> {
  const stream: string[] = [];
  type Chain = {
    service: string;
    writer: string;
    links: { record: AuditRecord; streamSeq: number; subject: string }[];
  };
  const chains = new Map<string, Chain>();
  let expectedSeq = 1;
  let count = 0;
  for (const { seq, subject, data } of stored) {
    count += 1;
    if (seq !== expectedSeq) stream.push(`stream records ${expectedSeq}..${seq - 1} are missing`);
    expectedSeq = seq + 1;
    let record: AuditRecord;
    try {
      record = AuditRecordSchema.parse(JSON.parse(new TextDecoder().decode(data)));
    } catch {
      stream.push(`stream record ${seq} on ${subject} is not a valid audit record`);
      continue;
    }
    const key = auditKeyName(record.service, record.writer);
    const chain = chains.get(key) ?? { service: record.service, writer: record.writer, links: [] };
    chain.links.push({ record, streamSeq: seq, subject });
    chains.set(key, chain);
  }
  const writers: AuditWriterReport[] = [];
  for (const [key, { service, writer, links }] of chains) {
    writers.push(await verifyWriter(service, writer, links, keys.pins.get(key), keys));
  }
  writers.sort((a, b) => `${a.service}.${a.writer}`.localeCompare(`${b.service}.${b.writer}`));
  return {
    records: count,
    intact: stream.length === 0 && writers.every((report) => report.status === "intact"),
    writers,
    stream,
    pinsReplaceable: keys.pinsReplaceable,
  };
}

async function verifyWriter(
  service: string,
  writer: string,
  chain: { record: AuditRecord; streamSeq: number; subject: string }[],
  pin: AuditKeyPin | undefined,
  keys: AuditKeys,
): Promise<AuditWriterReport> {
  const report: AuditWriterReport = { service, writer, records: chain.length, status: "intact" };
  if (pin === undefined || pin.service !== service || pin.writer !== writer) {
    return { ...report, status: "unknown signer" };
  }
  // A retried publish may land after a later record: the chain's order is its numbers.
  const ordered = [...chain].sort((a, b) => a.record.seq - b.record.seq || a.streamSeq - b.streamSeq);
  let previous = GENESIS_HASH;
  let expected = 1;
  // The first record not yet covered by a signature: a later record's signature covers it.
  let unsigned: { seq: number; streamSeq: number } | undefined;
  for (const { record, streamSeq, subject } of ordered) {
    const broken = (problem: string): AuditWriterReport => ({
      ...report,
      status: "broken",
      broken: { seq: record.seq, streamSeq, problem },
    });
    if (subject !== auditSubject(service, writer)) {
      return broken(`record ${record.id} was published on ${subject}, not on its writer's subject`);
    }
    if (record.seq < expected) return broken(`record number ${record.seq} appears twice (replayed)`);
    if (record.seq > expected) return broken(`records ${expected}..${record.seq - 1} are missing`);
    const { hash, sig, ...unhashed } = record;
    if (auditHash(unhashed) !== hash) return broken(`record ${record.id} does not match its hash (edited)`);
    if (sig === undefined) unsigned ??= { seq: record.seq, streamSeq };
    else if (!auditSignatureValid(hash, sig, pin)) {
      return broken(`record ${record.id} is not signed by the key ${service} pinned for writer ${writer}`);
    } else unsigned = undefined;
    if (record.prevHash !== previous) {
      return broken(
        `record ${record.id} does not link to the writer's record before it (inserted or reordered)`,
      );
    }
    const carriesGrant = record.grant !== undefined || record.kind === AuditKind.GRANT_ADMITTED;
    if (carriesGrant && !(await grantSigned(record.grant, keys))) {
      return broken(`record ${record.id} carries a grant acp-policy did not sign`);
    }
    previous = hash;
    expected += 1;
  }
  if (unsigned !== undefined) {
    return {
      ...report,
      status: "broken",
      broken: {
        ...unsigned,
        problem: `records ${unsigned.seq}..${expected - 1} are signed by no later record of the writer (it stopped mid-batch, or they are not its own)`,
      },
    };
  }
  return report;
}

/** The grant's signature verifies with one of acp-policy's published grant keys (expiry aside). */
async function grantSigned(grant: string | undefined, keys: AuditKeys): Promise<boolean> {
  if (grant === undefined) return false;
  try {
    const header = decodeProtectedHeader(grant);
    if (header.typ !== GRANT_TYPE || header.alg !== "EdDSA" || typeof header.kid !== "string") return false;
    const key = await keys.grantKey(header.kid);
    if (key === undefined) return false;
    await compactVerify(grant, key, { algorithms: ["EdDSA"] });
    return true;
  } catch {
    return false;
  }
}

/**
 * Why the pins bucket's stream lets a pin be replaced (empty when it is write-once);
 * INVALID_INPUT when there is no bucket yet.
 */
export async function pinBucketProblems(jsm: JetStreamManager): Promise<string[]> {
  const name = bucketStream(Buckets.AUDIT_KEYS);
  try {
    return writeOnceProblems((await jsm.streams.info(name)).config);
  } catch (cause) {
    if (!(cause instanceof JetStreamApiError && cause.code === JetStreamApiCodes.StreamNotFound)) throw cause;
    throw new LoomError(ErrorCode.INVALID_INPUT, `there is no ${name} stream yet: has any service audited?`, {
      cause,
    });
  }
}

/** Every pinned writer key, whether pins can be replaced, and a lookup of acp-policy's grant keys. */
export async function readAuditKeys(nc: NatsConnection): Promise<AuditKeys> {
  const pinsReplaceable = await pinBucketProblems(await jetstreamManager(nc));
  const kvm = new Kvm(nc);
  const pins = new Map<string, AuditKeyPin>();
  const pinBucket = await kvm.open(Buckets.AUDIT_KEYS);
  for await (const key of await pinBucket.keys()) {
    const entry = await pinBucket.get(key);
    if (entry?.operation !== "PUT") continue;
    const pin = AuditKeyPinSchema.safeParse(entry.json());
    if (pin.success) pins.set(key, pin.data);
  }
  const grantKeys = await kvm.open(Buckets.GRANT_KEYS);
  return {
    pins,
    pinsReplaceable,
    async grantKey(kid) {
      const entry = await grantKeys.get(kid);
      if (entry?.operation !== "PUT") return undefined;
      return importJWK(JSON.parse(entry.string()) as JWK, "EdDSA") as Promise<CryptoKey | Uint8Array>;
    },
  };
}

/** The audit stream's info; INVALID_INPUT naming acp-policy when there is no stream yet. */
export async function auditStreamInfo(jsm: JetStreamManager) {
  try {
    return await jsm.streams.info(Streams.AUDIT);
  } catch (cause) {
    throw new LoomError(
      ErrorCode.INVALID_INPUT,
      `there is no ${Streams.AUDIT} stream yet: is acp-policy running?`,
      {
        cause,
      },
    );
  }
}

/** Every stored record of `LOOM_AUDIT`, in order, through an ordered consumer. */
export async function readAuditStream(nc: NatsConnection): Promise<StoredRecord[]> {
  const jsm = await jetstreamManager(nc);
  const { state } = await auditStreamInfo(jsm);
  const stored: StoredRecord[] = [];
  if (state.messages === 0) return stored;
  const consumer = await jetstream(nc).consumers.get(Streams.AUDIT, { deliver_policy: DeliverPolicy.All });
  const messages = await consumer.consume();
  for await (const message of messages) {
    stored.push({ seq: message.seq, subject: message.subject, data: message.data });
    if (message.seq >= state.last_seq) break;
  }
  messages.stop();
  return stored;
}
