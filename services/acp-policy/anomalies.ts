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
 * One principal's calls over the last hour, counted per second: adding a call and counting the
 * last window cost the same however many calls the hour holds.
 */
export class CallHistory {
  /** Seconds (since the epoch) with calls, oldest first from `#head`, and their counts. */
  readonly #seconds: number[] = [];
  readonly #counts: number[] = [];
  #head = 0;
  #total = 0;

  /** Counts a call at `now` (ms) and forgets the calls older than the history. */
  add(now: number): void {
    const second = Math.floor(now / 1000);
    const last = this.#seconds.length - 1;
    if (last >= this.#head && this.#seconds[last] === second)
      this.#counts[last] = (this.#counts[last] ?? 0) + 1;
    else {
      this.#seconds.push(second);
      this.#counts.push(1);
    }
    this.#total += 1;
    const oldest = Math.floor((now - HISTORY_MS) / 1000);
    while ((this.#seconds[this.#head] ?? Number.POSITIVE_INFINITY) <= oldest) {
      this.#total -= this.#counts[this.#head] ?? 0;
      this.#head += 1;
    }
    if (this.#head > 1024 && this.#head * 2 > this.#seconds.length) {
      this.#seconds.splice(0, this.#head);
      this.#counts.splice(0, this.#head);
      this.#head = 0;
    }
  }

  /** Calls in the history. */
  get total(): number {
    return this.#total;
  }

  /** Calls in the window of `windowMs` up to `now`. */
  within(now: number, windowMs: number): number {
    const after = Math.floor((now - windowMs) / 1000);
    let count = 0;
    for (let index = this.#seconds.length - 1; index >= this.#head; index--) {
      if ((this.#seconds[index] ?? 0) <= after) break;
      count += this.#counts[index] ?? 0;
    }
    return count;
  }

  /** When the oldest call in the history was made (ms, to the second); `now` when there is none. */
  since(now: number): number {
    const oldest = this.#seconds[this.#head];
    return oldest === undefined ? now : oldest * 1000;
  }
}

/**
 * Watches allowed tool calls for the unexpected: a principal calling a tool it never called before,
 * or calling far above its usual rate. Memory is this replica's; it starts empty at each start.
 */
export class AnomalyDetector {
  readonly #nc: NatsConnection;
  readonly #log: Logger;
  readonly #burst: number;
  readonly #seen = new Map<string, Set<string>>();
  readonly #calls = new Map<string, CallHistory>();
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
    const calls = this.#calls.get(principal) ?? new CallHistory();
    this.#calls.set(principal, calls);
    calls.add(now);
    const inWindow = calls.within(now, WINDOW_MS);
    const windows = Math.max(1, Math.min(HISTORY_MS, now - calls.since(now)) / WINDOW_MS);
    const usual = (calls.total - inWindow) / windows;
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
