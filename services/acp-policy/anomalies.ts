import { randomUUID } from "node:crypto";
import type { NatsConnection } from "@nats-io/transport-node";
import { Counter } from "prom-client";
import { type Alert, AlertKind, AlertSchema } from "../../schemas/alert.ts";
import { Subjects } from "../../schemas/subjects.ts";
import { activeTraceId, encodePayload, type Logger, registry, tracedHeaders } from "../kit/index.ts";

const WINDOW_MS = 10_000;
const HISTORY_MS = 60 * 60_000;
/** A burst is this many times the principal's usual calls per window (and at least `burst` calls). */
const BURST_FACTOR = 5;

/** `loom_policy_alerts_total{kind}` on acp-policy's `/metrics`. */
const alertsRaised = new Counter({
  name: "loom_policy_alerts_total",
  help: "Anomaly alerts acp-policy raised on loom.v1.alerts, by kind (new-tool, burst)",
  labelNames: ["kind"] as const,
  registers: [registry],
});

/**
 * Watches allowed tool calls for the unexpected: a principal calling a tool it never called before,
 * or calling far above its usual rate. Memory is this replica's; it starts empty at each start.
 */
export class AnomalyDetector {
  readonly #nc: NatsConnection;
  readonly #log: Logger;
  readonly #burst: number;
  readonly #seen = new Map<string, Set<string>>();
  readonly #calls = new Map<string, number[]>();
  readonly #burstAlerted = new Map<string, number>();

  constructor(options: { nc: NatsConnection; log: Logger; burst: number }) {
    this.#nc = options.nc;
    this.#log = options.log;
    this.#burst = options.burst;
  }

  observe(principal: string, tool: string, runId: string | undefined, now = Date.now()): void {
    const tools = this.#seen.get(principal) ?? new Set<string>();
    this.#seen.set(principal, tools);
    if (!tools.has(tool)) {
      tools.add(tool);
      this.#raise(
        AlertKind.NEW_TOOL,
        principal,
        tool,
        runId,
        `${principal} called ${tool} for the first time`,
      );
    }
    const calls = (this.#calls.get(principal) ?? []).filter((time) => time > now - HISTORY_MS);
    calls.push(now);
    this.#calls.set(principal, calls);
    const inWindow = calls.filter((time) => time > now - WINDOW_MS).length;
    const windows = Math.max(1, Math.min(HISTORY_MS, now - (calls[0] ?? now)) / WINDOW_MS);
    const usual = (calls.length - inWindow) / windows;
    const quietSince = this.#burstAlerted.get(principal) ?? 0;
    if (inWindow >= this.#burst && inWindow > BURST_FACTOR * usual && now - quietSince > WINDOW_MS) {
      this.#burstAlerted.set(principal, now);
      this.#raise(
        AlertKind.BURST,
        principal,
        tool,
        runId,
        `${principal} made ${inWindow} calls in ${WINDOW_MS / 1000} s, usually ${usual.toFixed(1)}`,
      );
    }
  }

  #raise(kind: AlertKind, principal: string, tool: string, runId: string | undefined, message: string): void {
    alertsRaised.inc({ kind });
    const traceId = activeTraceId();
    const alert: Alert = {
      id: randomUUID(),
      time: new Date().toISOString(),
      kind,
      principal,
      tool,
      message,
      ...(runId === undefined ? {} : { runId }),
      ...(traceId === undefined ? {} : { traceId }),
    };
    this.#log.warn({ alert_kind: kind, principal, tool }, `alert: ${message}`);
    this.#nc.publish(Subjects.ALERTS, encodePayload(AlertSchema, alert, "alert"), {
      headers: tracedHeaders(),
    });
  }
}
