import { setTimeout as sleep } from "node:timers/promises";
import { DeliverPolicy, type JetStreamManager, type JsMsg } from "@nats-io/jetstream";
import { Consumers, Headers, RUN_ID_PATTERN, Streams } from "../../schemas/subjects.ts";
import { acceptSubmission, type SubmissionOptions } from "./submissions.ts";

export interface RecoveryOptions extends SubmissionOptions {
  jsm: JetStreamManager;
  /** How far back to look: longer than the broker can hold acknowledged writes unflushed. */
  windowMs: number;
}

/** Pauses between failed recovery passes: doubling from the first, capped at the last. */
const PASS_RETRY_FIRST_MS = 250;
const PASS_RETRY_MAX_MS = 5_000;

/**
 * The submissions stream is the record of accepted runs. A single nats-server without sync that
 * is killed can come back without writes it acknowledged, a run record among them, while the
 * submission survives. This reads the submissions of the last `windowMs` that the shared
 * consumer has acknowledged and admits again each whose run the store does not hold, so the run
 * is driven to an end. Re-driving is safe: each step's stored outcome (`loom_steps`) and the
 * tool's idempotency key keep effects that already happened from happening twice. Submissions
 * above the consumer's ack floor are left to the consumer. Resolves with the runs admitted again;
 * rejects when the broker failed it, and a later pass picks up where the store still lacks runs.
 */
export async function recoverLostRuns(
  options: RecoveryOptions,
  stopping: AbortSignal = new AbortController().signal,
): Promise<number> {
  const { ack_floor } = await options.jsm.consumers.info(Streams.RUNS, Consumers.ORCHESTRATOR_SUBMISSIONS);
  const consumer = await options.js.consumers.get(Streams.RUNS, {
    deliver_policy: DeliverPolicy.StartTime,
    opt_start_time: new Date(Date.now() - options.windowMs).toISOString(),
  });
  let recovered = 0;
  for (;;) {
    const batch = await consumer.fetch({ max_messages: 256, expires: 1_000 });
    let read = 0;
    for await (const message of batch) {
      read++;
      if (message.seq > ack_floor.stream_seq || stopping.aborted) {
        batch.stop();
        return recovered;
      }
      const runId = message.headers?.get(Headers.MSG_ID) ?? "";
      if (!RUN_ID_PATTERN.test(runId) || (await options.runs.get(runId)) !== undefined) continue;
      options.log.warn(
        { run_id: runId, seq: message.seq },
        "run acknowledged but missing from the store; admitting it again",
      );
      await readmit(options, message, stopping);
      recovered++;
    }
    // An empty fetch under load can be a slow server rather than the stream's end: ask.
    if (read === 0 && (await consumer.info()).num_pending === 0) return recovered;
  }
}

/**
 * Admits one submission again as the shared consumer would deliver it: a retryable refusal (the
 * policy service not back yet after the broker restarted, say) waits and tries again with the
 * next delivery count, so the last one records a typed failure, as a redelivered submission does.
 */
async function readmit(options: RecoveryOptions, message: JsMsg, stopping: AbortSignal): Promise<void> {
  for (let deliveryCount = 1; !stopping.aborted; deliveryCount++) {
    let retryInMs: number | undefined;
    await acceptSubmission(options, {
      subject: message.subject,
      data: message.data,
      headers: message.headers,
      seq: message.seq,
      deliveryCount,
      ack: () => {},
      nak: (delayMs) => {
        retryInMs = delayMs;
      },
    });
    if (retryInMs === undefined) return;
    await pause(retryInMs, stopping);
  }
}

/**
 * Recovers lost runs once now and again after every reconnect to NATS (a broker that restarted
 * is when writes can have been lost), one pass at a time, until stopped. A pass the broker failed
 * (a restarted server whose JetStream is still starting) is tried again with backoff until one
 * completes: waiting for the next reconnect could wait forever.
 */
export function startRunRecovery(options: RecoveryOptions): { stop(): Promise<void> } {
  const stopping = new AbortController();
  const pass = async () => {
    for (
      let delayMs = PASS_RETRY_FIRST_MS;
      !stopping.signal.aborted;
      delayMs = Math.min(delayMs * 2, PASS_RETRY_MAX_MS)
    ) {
      try {
        const recovered = await recoverLostRuns(options, stopping.signal);
        if (recovered > 0) options.log.warn({ recovered }, "runs the store had lost were admitted again");
        return;
      } catch (error) {
        options.log.warn({ err: error, retry_in_ms: delayMs }, "could not look for lost runs; looking again");
        await pause(delayMs, stopping.signal);
      }
    }
  };
  let running = pass();
  const watching = (async () => {
    for await (const status of options.nc.status()) {
      if (stopping.signal.aborted) return;
      if (status.type === "reconnect") running = running.then(pass);
    }
  })();
  return {
    async stop() {
      stopping.abort();
      await running;
      void watching;
    },
  };
}

/** Waits `ms`, or less when `signal` aborts (the recovery is stopping). */
function pause(ms: number, signal: AbortSignal): Promise<void> {
  return sleep(ms, undefined, { signal }).catch((error: unknown) => {
    if (!signal.aborted) throw error;
  });
}
