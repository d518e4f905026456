import { randomUUID } from "node:crypto";
import type { JetStreamClient } from "@nats-io/jetstream";
import { type AuditRecord, AuditRecordSchema } from "../../schemas/audit.ts";
import { auditSubject } from "../../schemas/subjects.ts";
import { activeTraceId, encodePayload, tracedHeaders } from "../kit/index.ts";

export const AUDIT_SERVICE = "acp-policy";

/** Appends records to `LOOM_AUDIT`; a decision is answered only once its record is stored. */
export class AuditLog {
  readonly #js: JetStreamClient;

  constructor(js: JetStreamClient) {
    this.#js = js;
  }

  async append(record: Omit<AuditRecord, "id" | "time" | "service" | "traceId">): Promise<AuditRecord> {
    const traceId = activeTraceId();
    const full: AuditRecord = {
      id: randomUUID(),
      time: new Date().toISOString(),
      service: AUDIT_SERVICE,
      ...record,
      ...(traceId === undefined ? {} : { traceId }),
    };
    await this.#js.publish(
      auditSubject(AUDIT_SERVICE),
      encodePayload(AuditRecordSchema, full, "audit record"),
      {
        msgID: full.id,
        headers: tracedHeaders(),
      },
    );
    return full;
  }
}
