import { randomUUID } from "node:crypto";
import {
  JetStreamApiError,
  type JetStreamClient,
  type JetStreamManager,
  jetstream,
  jetstreamManager,
} from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { type AuditEntry, type AuditRecord, AuditRecordSchema, GENESIS_HASH } from "../../schemas/audit.ts";
import { auditSubject, Streams } from "../../schemas/subjects.ts";
import { encodePayload, tracedHeaders } from "./bus.ts";
import { canonicalJson, sha256Hex } from "./digest.ts";
import { ensureStream, StreamDefinitions } from "./jetstream.ts";
import { activeTraceId } from "./telemetry.ts";

/** JetStream's "wrong last sequence": another writer appended first. */
const WRONG_LAST_SEQUENCE = 10071;
/** JetStream's "wrong last msg ID": a record's predecessor is not the stream's last message. */
const WRONG_LAST_MSG_ID = 10070;
const MAX_ATTEMPTS = 50;

/** The hash a record must carry: sha256 over its `prevHash` and canonical JSON without `hash`. */
export function auditHash(record: Omit<AuditRecord, "hash">): string {
  return sha256Hex(record.prevHash + canonicalJson(record));
}

/** At most this many records go out in one pipelined batch. */
const MAX_BATCH = 256;

interface Pending {
  base: Omit<AuditRecord, "prevHash" | "hash">;
  resolve: (record: AuditRecord) => void;
  reject: (error: unknown) => void;
}

/**
 * Appends hash-chained records to `LOOM_AUDIT`. Every writer in every service extends one chain.
 * Records waiting in this process go out together, pipelined: the first expects the stream's last
 * sequence, each later one expects the previous record's message id as the stream's last. When
 * another writer gets in between, that record and every one after it are refused by the server,
 * never stored out of chain, and are chained again onto the new last record.
 */
export class AuditLog {
  readonly #service: string;
  readonly #js: JetStreamClient;
  readonly #jsm: Promise<JetStreamManager>;
  #last: { seq: number; hash: string } | undefined;
  readonly #pending: Pending[] = [];
  #draining = false;

  /** `replicas`: of the audit stream, made with that many on first use (see `streamReplicas`). */
  constructor(nc: NatsConnection, service: string, replicas: number) {
    this.#service = service;
    this.#js = jetstream(nc);
    // The stream is made on first use, so any service can be the first to audit.
    this.#jsm = jetstreamManager(nc).then(async (jsm) => {
      await ensureStream(jsm, StreamDefinitions.audit, replicas);
      return jsm;
    });
  }

  /** Resolves once the record is stored; appends from this process are kept in order. */
  append(entry: AuditEntry): Promise<AuditRecord> {
    const traceId = activeTraceId();
    return new Promise((resolve, reject) => {
      this.#pending.push({
        base: {
          id: randomUUID(),
          time: new Date().toISOString(),
          service: this.#service,
          ...entry,
          ...(traceId === undefined ? {} : { traceId }),
        },
        resolve,
        reject,
      });
      void this.#drain();
    });
  }

  async #drain(): Promise<void> {
    if (this.#draining) return;
    this.#draining = true;
    try {
      while (this.#pending.length > 0) await this.#publish(this.#pending.splice(0, MAX_BATCH));
    } finally {
      this.#draining = false;
    }
  }

  async #publish(batch: Pending[]): Promise<void> {
    let waiting = batch;
    for (let attempt = 1; waiting.length > 0; attempt++) {
      let last: { seq: number; hash: string };
      try {
        last = this.#last ?? (await this.#readLast());
      } catch (error) {
        for (const pending of waiting) pending.reject(error);
        return;
      }
      let prevHash = last.hash;
      const records = waiting.map(({ base }) => {
        const unhashed = { ...base, prevHash };
        const record: AuditRecord = { ...unhashed, hash: auditHash(unhashed) };
        prevHash = record.hash;
        return record;
      });
      const acks = await Promise.allSettled(
        records.map((record, index) =>
          this.#js.publish(
            auditSubject(this.#service),
            encodePayload(AuditRecordSchema, record, "audit record"),
            {
              msgID: record.id,
              expect: index === 0 ? { lastSequence: last.seq } : { lastMsgID: records[index - 1]?.id ?? "" },
              headers: tracedHeaders(),
            },
          ),
        ),
      );
      let stored = 0;
      for (const ack of acks) {
        if (ack.status !== "fulfilled") break;
        const record = records[stored] as AuditRecord;
        this.#last = { seq: ack.value.seq, hash: record.hash };
        waiting[stored]?.resolve(record);
        stored += 1;
      }
      if (stored === waiting.length) return;
      this.#last = undefined;
      const failure = acks[stored] as PromiseRejectedResult;
      waiting = waiting.slice(stored);
      if (!isChainConflict(failure.reason) || attempt >= MAX_ATTEMPTS) {
        for (const pending of waiting) pending.reject(failure.reason);
        return;
      }
    }
  }

  async #readLast(): Promise<{ seq: number; hash: string }> {
    const jsm = await this.#jsm;
    const { state } = await jsm.streams.info(Streams.AUDIT);
    if (state.last_seq === 0) return { seq: 0, hash: GENESIS_HASH };
    const message = await jsm.streams.getMessage(Streams.AUDIT, { seq: state.last_seq });
    if (message === null) return { seq: state.last_seq, hash: GENESIS_HASH };
    // A record that does not parse still gets chained onto: `loom audit verify` reports it.
    const hash =
      AuditRecordSchema.safeParse(message.json()).data?.hash ??
      sha256Hex(new TextDecoder().decode(message.data));
    return { seq: state.last_seq, hash };
  }
}

/** Another writer appended first: the record is chained again, not lost. */
function isChainConflict(error: unknown): boolean {
  return (
    error instanceof JetStreamApiError &&
    (error.code === WRONG_LAST_SEQUENCE || error.code === WRONG_LAST_MSG_ID)
  );
}
