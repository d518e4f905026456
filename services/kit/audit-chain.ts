import { generateKeyPairSync, type KeyObject, randomBytes, randomUUID, sign, verify } from "node:crypto";
import { type JetStreamClient, jetstream } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import {
  type AuditEntry,
  AuditEntrySchema,
  type AuditKeyPin,
  AuditKeyPinSchema,
  type AuditRecord,
  auditKeyName,
  GENESIS_HASH,
} from "../../schemas/audit.ts";
import { ErrorCode } from "../../schemas/errors.ts";
import { auditSubject, Buckets } from "../../schemas/subjects.ts";
import { encodeJson, encodePayload, tracedHeaders } from "./bus.ts";
import { canonicalJson, sha256Hex } from "./digest.ts";
import { describeIssues, isBrokerFailure, LoomError } from "./errors.ts";
import {
  ensureStream,
  openBucket,
  openJetStreamManager,
  StreamDefinitions,
  writeOnceBucketStream,
} from "./jetstream.ts";
import { casWrite, retryBrokerFailures } from "./kv-cas.ts";
import { activeTraceId } from "./telemetry.ts";

/** At most this many records go out in one pipelined batch. */
const MAX_BATCH = 256;

/** The hash a record must carry: sha256 over its `prevHash` and canonical JSON without `hash` and `sig`. */
export function auditHash(record: Omit<AuditRecord, "hash" | "sig">): string {
  return sha256Hex(record.prevHash + canonicalJson(record));
}

/** Whether `sig` is the Ed25519 signature of `hash` by the pinned key (SPKI DER, base64). */
export function auditSignatureValid(hash: string, sig: string, pin: Pick<AuditKeyPin, "publicKey">): boolean {
  try {
    const key = { key: Buffer.from(pin.publicKey, "base64"), format: "der", type: "spki" } as const;
    return verify(null, Buffer.from(hash, "hex"), key, Buffer.from(sig, "base64url"));
  } catch {
    return false;
  }
}

interface Pending {
  record: AuditRecord;
  resolve: (record: AuditRecord) => void;
  reject: (error: unknown) => void;
}

/**
 * One audit writer: this process's own chain in `LOOM_AUDIT`, on `loom.v1.audit.<service>.<writer>`.
 * At start it makes an Ed25519 key (never written anywhere) and a writer id of its own, and pins
 * the public half in KV `loom_audit_keys` under `<service>.<writer>`, which only the service's NATS
 * user may write, and only once (the bucket is write-once): a writer's key never changes, and a
 * restarted process is a new writer with a new key. Every record is chained onto the writer's
 * previous one. Being the only writer of its chain, it never conflicts with another: records are
 * chained in call order, and go out in pipelined batches (whatever waits while a batch is in
 * flight forms the next one), the last record of each signed. Under load a signature covers many
 * records; one at a time, every record is signed.
 */
export class AuditLog {
  readonly service: string;
  readonly writer: string;
  readonly #js: JetStreamClient;
  readonly #privateKey: KeyObject;
  readonly #ready: Promise<void>;
  /** Set once the key is pinned: from then on a record is published in the turn it is appended. */
  #started = false;
  #seq = 0;
  #lastHash = GENESIS_HASH;
  readonly #pending: Pending[] = [];
  #draining = false;

  /** `replicas`: of the audit stream and the key bucket, made with that many on first use (see `streamReplicas`). */
  constructor(nc: NatsConnection, service: string, replicas: number) {
    const writer = randomBytes(9).toString("base64url");
    this.service = service;
    this.writer = writer;
    this.#js = jetstream(nc);
    const { privateKey, publicKey } = generateKeyPairSync("ed25519");
    this.#privateKey = privateKey;
    const pin: AuditKeyPin = {
      service,
      writer,
      publicKey: publicKey.export({ format: "der", type: "spki" }).toString("base64"),
      createdAt: new Date().toISOString(),
    };
    // The stream and the write-once pins bucket are made on first use, so any service can be the
    // first to audit. The pin is created, never put: no record goes out before the key that signs
    // it is pinned. Broker failures are retried; a pin whose answer was lost is recognised by its bytes.
    this.#ready = (async () => {
      const jsm = await openJetStreamManager(nc);
      await ensureStream(jsm, StreamDefinitions.audit, replicas);
      await ensureStream(jsm, writeOnceBucketStream(Buckets.AUDIT_KEYS), replicas);
      const keys = await openBucket(nc, Buckets.AUDIT_KEYS, { replicas });
      const name = auditKeyName(service, writer);
      const pinned = await casWrite(
        keys,
        name,
        encodePayload(AuditKeyPinSchema, pin, "audit key pin"),
        undefined,
      );
      if (pinned === undefined) throw new Error(`audit key ${name} is already pinned by another writer`);
      this.#started = true;
    })();
    // A failed start is reported by every append; this only keeps it from being unhandled.
    this.#ready.catch(() => {});
  }

  /**
   * Resolves once the record is stored (acked by JetStream). Unless a batch is in flight, the
   * record is published before this returns, so it leaves in the same socket write as whatever the
   * caller publishes in the same turn.
   */
  append(entry: AuditEntry): Promise<AuditRecord> {
    // Checked before it takes a place in the chain: a record refused later would leave a gap.
    const checked = AuditEntrySchema.safeParse(entry);
    if (!checked.success) {
      return Promise.reject(
        new LoomError(
          ErrorCode.INTERNAL,
          `refusing a malformed audit record: ${describeIssues(checked.error.issues)}`,
        ),
      );
    }
    const traceId = activeTraceId();
    this.#seq += 1;
    const unhashed = {
      id: randomUUID(),
      time: new Date().toISOString(),
      service: this.service,
      ...checked.data,
      ...(traceId === undefined ? {} : { traceId }),
      writer: this.writer,
      seq: this.#seq,
      prevHash: this.#lastHash,
    };
    const hash = auditHash(unhashed);
    const record: AuditRecord = { ...unhashed, hash };
    this.#lastHash = hash;
    return new Promise((resolve, reject) => {
      this.#pending.push({ record, resolve, reject });
      void this.#drain();
    });
  }

  async #drain(): Promise<void> {
    if (this.#draining) return;
    this.#draining = true;
    try {
      if (!this.#started) {
        await this.#ready.catch((error: unknown) => {
          for (const pending of this.#pending.splice(0)) pending.reject(error);
        });
      }
      while (this.#pending.length > 0) await this.#publish(this.#pending.splice(0, MAX_BATCH));
    } finally {
      this.#draining = false;
    }
  }

  /**
   * Publishes a batch in order on one connection, its last record signed: one signature per batch,
   * which covers the whole batch through the chain. A record whose publish met a broker failure
   * (a timeout, no responders, a cluster between leaders) is sent again with backoff under the
   * same message id, so JetStream stores it once; any other failure rejects that record's append.
   * The appends resolve once the whole batch is settled, so a record reported stored is covered
   * by a stored signature.
   */
  async #publish(batch: Pending[]): Promise<void> {
    const last = batch.at(-1);
    if (last !== undefined) {
      const { hash } = last.record;
      last.record = {
        ...last.record,
        sig: sign(null, Buffer.from(hash, "hex"), this.#privateKey).toString("base64url"),
      };
    }
    const stored: Pending[] = [];
    let waiting = batch;
    try {
      await retryBrokerFailures(async () => {
        const acks = await Promise.allSettled(
          waiting.map(({ record }) =>
            this.#js.publish(
              auditSubject(this.service, this.writer),
              // The bytes sent are those of the record as hashed; its entry was checked on append.
              encodeJson(record),
              { msgID: record.id, headers: tracedHeaders() },
            ),
          ),
        );
        const failed: Pending[] = [];
        let brokerFailure: unknown;
        for (const [index, ack] of acks.entries()) {
          const pending = waiting[index] as Pending;
          if (ack.status === "fulfilled") stored.push(pending);
          else if (!isBrokerFailure(ack.reason)) pending.reject(ack.reason);
          else {
            failed.push(pending);
            brokerFailure = ack.reason;
          }
        }
        waiting = failed;
        if (failed.length > 0) throw brokerFailure;
      });
    } catch (error) {
      for (const pending of waiting) pending.reject(error);
    }
    for (const pending of stored) pending.resolve(pending.record);
  }
}
