import { DeliverPolicy, jetstream, jetstreamManager } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/transport-node";
import { type CryptoKey, compactVerify, decodeProtectedHeader, importJWK, type JWK } from "jose";
import {
  type AuditKeyPin,
  AuditKeyPinSchema,
  AuditKind,
  type AuditRecord,
  AuditRecordSchema,
  auditKeyName,
  GENESIS_HASH,
} from "../../../schemas/audit.ts";
import { ErrorCode } from "../../../schemas/errors.ts";
import { GRANT_TYPE } from "../../../schemas/policy.ts";
import { auditSubject, Buckets, Streams } from "../../../schemas/subjects.ts";
import { auditHash, auditSignatureValid } from "../../kit/audit-chain.ts";
import { LoomError } from "../../kit/index.ts";
import { connectCli } from "../connection.ts";
import { ExitCode } from "../exit-codes.ts";

/** One stored message of `LOOM_AUDIT`. */
export interface StoredRecord {
  seq: number;
  subject: string;
  data: Uint8Array;
}

/** One writer's chain: intact, broken at its first bad record, or signed by no pinned key. */
export interface WriterReport {
  service: string;
  writer: string;
  records: number;
  status: "intact" | "broken" | "unknown signer";
  /** The first record (its number in the writer's chain, and in the stream) that breaks it. */
  broken?: { seq: number; streamSeq: number; problem: string };
}

export interface AuditReport {
  records: number;
  intact: boolean;
  writers: WriterReport[];
  /** What is wrong with the stream itself: missing sequences, messages that are no audit record. */
  stream: string[];
}

/** How `verifyAudit` finds keys: the writers' pins, and acp-policy's grant keys by kid. */
export interface AuditKeys {
  pins: ReadonlyMap<string, AuditKeyPin>;
  grantKey: (kid: string) => Promise<Uint8Array | CryptoKey | undefined>;
}

/**
 * Checks every writer's chain: each record parses, was published on its writer's subject, carries
 * the hash of its own content, is signed by the key pinned for the service and writer it names
 * (so the service it claims is the one that signed it), links to the writer's record before it,
 * and the writer's numbers run 1, 2, 3 without a gap or a repeat. A record admitting a grant must
 * carry a grant acp-policy signed. The stream's own sequences must have no gaps (deletes are denied).
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
  const writers: WriterReport[] = [];
  for (const [key, { service, writer, links }] of chains) {
    writers.push(await verifyWriter(service, writer, links, keys.pins.get(key), keys));
  }
  writers.sort((a, b) => `${a.service}.${a.writer}`.localeCompare(`${b.service}.${b.writer}`));
  return {
    records: count,
    intact: stream.length === 0 && writers.every((report) => report.status === "intact"),
    writers,
    stream,
  };
}

async function verifyWriter(
  service: string,
  writer: string,
  chain: { record: AuditRecord; streamSeq: number; subject: string }[],
  pin: AuditKeyPin | undefined,
  keys: AuditKeys,
): Promise<WriterReport> {
  const report: WriterReport = { service, writer, records: chain.length, status: "intact" };
  if (pin === undefined || pin.service !== service || pin.writer !== writer) {
    return { ...report, status: "unknown signer" };
  }
  // A retried publish may land after a later record: the chain's order is its numbers.
  const ordered = [...chain].sort((a, b) => a.record.seq - b.record.seq || a.streamSeq - b.streamSeq);
  let previous = GENESIS_HASH;
  let expected = 1;
  for (const { record, streamSeq, subject } of ordered) {
    const broken = (problem: string): WriterReport => ({
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
    if (!auditSignatureValid(hash, sig, pin)) {
      return broken(`record ${record.id} is not signed by the key ${service} pinned for writer ${writer}`);
    }
    if (record.prevHash !== previous) {
      return broken(
        `record ${record.id} does not link to the writer's record before it (inserted or reordered)`,
      );
    }
    if (record.kind === AuditKind.GRANT_ADMITTED && !(await grantSigned(record.grant, keys))) {
      return broken(`record ${record.id} admits a grant acp-policy did not sign`);
    }
    previous = hash;
    expected += 1;
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

/** Every pinned writer key, and a lookup of acp-policy's grant keys. */
async function readKeys(nc: NatsConnection): Promise<AuditKeys> {
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
    async grantKey(kid) {
      const entry = await grantKeys.get(kid);
      if (entry?.operation !== "PUT") return undefined;
      return importJWK(JSON.parse(entry.string()) as JWK, "EdDSA") as Promise<CryptoKey | Uint8Array>;
    },
  };
}

/** One line per writer, then what is wrong with the stream. */
export function describeAudit(report: AuditReport): string[] {
  const lines = report.writers.map((writer) => {
    const name = `${writer.service}/${writer.writer}`;
    if (writer.status === "intact") return `${name}: intact, ${writer.records} records`;
    if (writer.status === "unknown signer") {
      return `${name}: UNKNOWN SIGNER, no key pinned for it (${writer.records} records)`;
    }
    return `${name}: BROKEN at seq ${writer.broken?.seq} (stream seq ${writer.broken?.streamSeq}): ${writer.broken?.problem}`;
  });
  lines.push(...report.stream.map((problem) => `stream: ${problem}`));
  lines.push(
    report.intact
      ? `audit intact: ${report.records} records from ${report.writers.length} writers`
      : `audit NOT intact: ${report.records} records from ${report.writers.length} writers`,
  );
  return lines;
}

/** `loom audit verify`: exit 0 when every writer's chain holds, 1 naming each broken one. */
export async function auditVerifyCommand(options: { nats: string; json: boolean }): Promise<ExitCode> {
  const nc = await connectCli(options.nats);
  try {
    const report = await verifyAudit(await readAll(nc), await readKeys(nc));
    if (options.json) console.log(JSON.stringify(report));
    else for (const line of describeAudit(report)) console.log(line);
    return report.intact ? ExitCode.OK : ExitCode.FAILED;
  } finally {
    await nc.close();
  }
}

export interface TailOptions {
  nats: string;
  follow: boolean;
  run?: string | undefined;
  lines: number;
  json: boolean;
}

/** `loom audit tail`: the last records (of one run with --run), and with --follow new ones as they come. */
export async function auditTailCommand(options: TailOptions): Promise<ExitCode> {
  const nc = await connectCli(options.nats);
  try {
    const jsm = await jetstreamManager(nc);
    const { state } = await streamInfo(jsm);
    const print = (record: AuditRecord) => {
      if (options.run !== undefined && record.runId !== options.run) return;
      console.log(options.json ? JSON.stringify(record) : auditLine(record));
    };
    const history = (await readAll(nc))
      .flatMap(({ data }) => {
        const parsed = AuditRecordSchema.safeParse(JSON.parse(new TextDecoder().decode(data)));
        return parsed.success ? [parsed.data] : [];
      })
      .filter((record) => options.run === undefined || record.runId === options.run);
    for (const record of options.lines > 0 ? history.slice(-options.lines) : []) print(record);
    if (!options.follow) return ExitCode.OK;
    const consumer = await jetstream(nc).consumers.get(Streams.AUDIT, {
      deliver_policy: DeliverPolicy.StartSequence,
      opt_start_seq: state.last_seq + 1,
    });
    const messages = await consumer.consume();
    const stop = () => messages.stop();
    process.once("SIGINT", stop);
    process.once("SIGTERM", stop);
    for await (const message of messages) {
      const parsed = AuditRecordSchema.safeParse(message.json());
      if (parsed.success) print(parsed.data);
      else console.log(`seq ${message.seq}: not a valid audit record`);
    }
    return ExitCode.OK;
  } finally {
    await nc.close();
  }
}

/** `HH:MM:SS  kind  principal  action resource  outcome  (rule)  run`: one record, no personal data. */
export function auditLine(record: AuditRecord): string {
  const outcome = record.effect ?? record.outcome ?? "";
  const rule = record.rule === undefined ? "" : ` by ${record.rule}`;
  const run =
    record.runId === undefined ? "" : `  run ${record.runId}${record.stepId ? `/${record.stepId}` : ""}`;
  const latency = record.latencyMs === undefined ? "" : `  ${record.latencyMs} ms`;
  return `${record.time.slice(11, 19)}  ${record.kind.padEnd(15)} ${record.principal.padEnd(10)} ${record.action ?? ""} ${record.resource}  ${outcome}${rule}${latency}${run}`;
}

async function streamInfo(jsm: Awaited<ReturnType<typeof jetstreamManager>>) {
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

/** Every stored record, in order, through an ordered consumer. */
async function readAll(nc: Awaited<ReturnType<typeof connectCli>>): Promise<StoredRecord[]> {
  const jsm = await jetstreamManager(nc);
  const { state } = await streamInfo(jsm);
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
