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
const MAX_ATTEMPTS = 50;

/** The hash a record must carry: sha256 over its `prevHash` and canonical JSON without `hash`. */
export function auditHash(record: Omit<AuditRecord, "hash">): string {
  return sha256Hex(record.prevHash + canonicalJson(record));
}

/**
 * Appends hash-chained records to `LOOM_AUDIT`. Every writer in every service extends one chain:
 * a record is published with JetStream's expected-last-sequence, so when another writer got in
 * first the publish is refused and the record is chained again onto the new last one.
 */
export class AuditLog {
  readonly #service: string;
  readonly #js: JetStreamClient;
  readonly #jsm: Promise<JetStreamManager>;
  #last: { seq: number; hash: string } | undefined;
  #queue: Promise<unknown> = Promise.resolve();

  constructor(nc: NatsConnection, service: string) {
    this.#service = service;
    this.#js = jetstream(nc);
    // The stream is made on first use, so any service can be the first to audit.
    this.#jsm = jetstreamManager(nc).then(async (jsm) => {
      await ensureStream(jsm, StreamDefinitions.audit);
      return jsm;
    });
  }

  /** Resolves once the record is stored; appends from this process are kept in order. */
  append(entry: AuditEntry): Promise<AuditRecord> {
    const appending = this.#queue.then(() => this.#append(entry));
    this.#queue = appending.catch(() => undefined);
    return appending;
  }

  async #append(entry: AuditEntry): Promise<AuditRecord> {
    const traceId = activeTraceId();
    const base = {
      id: randomUUID(),
      time: new Date().toISOString(),
      service: this.#service,
      ...entry,
      ...(traceId === undefined ? {} : { traceId }),
    };
    for (let attempt = 1; ; attempt++) {
      const last = this.#last ?? (await this.#readLast());
      const unhashed = { ...base, prevHash: last.hash };
      const record: AuditRecord = { ...unhashed, hash: auditHash(unhashed) };
      try {
        const ack = await this.#js.publish(
          auditSubject(this.#service),
          encodePayload(AuditRecordSchema, record, "audit record"),
          { msgID: record.id, expect: { lastSequence: last.seq }, headers: tracedHeaders() },
        );
        this.#last = { seq: ack.seq, hash: record.hash };
        return record;
      } catch (error) {
        this.#last = undefined;
        if (!isWrongLastSequence(error) || attempt >= MAX_ATTEMPTS) throw error;
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

function isWrongLastSequence(error: unknown): boolean {
  return error instanceof JetStreamApiError && error.code === WRONG_LAST_SEQUENCE;
}
