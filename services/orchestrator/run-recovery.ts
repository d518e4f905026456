import { DeliverPolicy, type JetStreamManager } from "@nats-io/jetstream";
import { Consumers, Headers, RUN_ID_PATTERN, Streams } from "../../schemas/subjects.ts";
import { acceptSubmission, type SubmissionOptions } from "./submissions.ts";

export interface RecoveryOptions extends SubmissionOptions {
  jsm: JetStreamManager;
  /** How far back to look: longer than the broker can hold acknowledged writes unflushed. */
  windowMs: number;
}

/**
 * The submissions stream is the record of accepted runs. A single nats-server without sync that
 * is killed can come back without writes it acknowledged, a run record among them, while the
 * submission survives. This reads the submissions of the last `windowMs` that the shared
 * consumer has acknowledged and admits again each whose run the store does not hold, so the run
 * is driven to an end. Re-driving is safe: each step's stored outcome (`loom_steps`) and the
 * tool's idempotency key keep effects that already happened from happening twice. Submissions
 * above the consumer's ack floor are left to the consumer. Resolves with the runs admitted again.
 */
export async function recoverLostRuns(options: RecoveryOptions): Promise<number> {
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
      if (message.seq > ack_floor.stream_seq) {
        batch.stop();
        return recovered;
      }
      const runId = message.headers?.get(Headers.MSG_ID) ?? "";
      if (!RUN_ID_PATTERN.test(runId) || (await options.runs.get(runId)) !== undefined) continue;
      options.log.warn(
        { run_id: runId, seq: message.seq },
        "run acknowledged but missing from the store; admitting it again",
      );
      // No consumer delivery to settle: a failure here is tried again by the next recovery.
      await acceptSubmission(options, {
        subject: message.subject,
        data: message.data,
        headers: message.headers,
        seq: message.seq,
        deliveryCount: 1,
        ack: () => {},
        nak: () => {},
      });
      recovered++;
    }
    if (read === 0) return recovered;
  }
}

/**
 * Recovers lost runs once now and again after every reconnect to NATS (a broker that restarted
 * is when writes can have been lost), one pass at a time, until stopped.
 */
export function startRunRecovery(options: RecoveryOptions): { stop(): Promise<void> } {
  let stopped = false;
  const pass = async () => {
    try {
      const recovered = await recoverLostRuns(options);
      if (recovered > 0) options.log.warn({ recovered }, "runs the store had lost were admitted again");
    } catch (error) {
      options.log.warn(
        { err: error },
        "could not look for lost runs; will look again after the next reconnect",
      );
    }
  };
  let running = pass();
  const watching = (async () => {
    for await (const status of options.nc.status()) {
      if (stopped) return;
      if (status.type === "reconnect") running = running.then(pass);
    }
  })();
  return {
    async stop() {
      stopped = true;
      await running;
      void watching;
    },
  };
}
