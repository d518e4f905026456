import { randomUUID } from "node:crypto";
import { jetstream } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import type { TaskState } from "../../schemas/a2a.ts";
import type { WireError } from "../../schemas/errors.ts";
import { Headers, Subjects } from "../../schemas/subjects.ts";
import { followRun, tracedHeaders, watchRun } from "../../services/kit/index.ts";

export interface RunOutcome {
  runId: string;
  state: TaskState;
  output: unknown;
  /** The error of a run that did not complete. */
  error: WireError | undefined;
  /** From the submission to the run's last event. */
  ms: number;
}

/** Who submits a run and who watches it: a caller submits, the test's observer reads the events. */
export interface RunActors {
  /** A connection as the `submitter` NATS user, which may publish on `loom.v1.runs.submit`. */
  submitter: NatsConnection;
  /** The test's read-only observer, which may read the LOOM_EVENTS stream. */
  observer: NatsConnection;
}

/**
 * Submits a run on the bus as the submitter, as `loom submit` does, and follows it to its end
 * through the observer; rejects when it has not ended within `timeoutMs`.
 */
export async function submitAndWatch(
  { submitter, observer }: RunActors,
  submission: { workflow: unknown; input?: Record<string, unknown>; token: string; timeoutMs?: number },
): Promise<RunOutcome> {
  const runId = `run-${randomUUID()}`;
  const started = Date.now();
  const watching = watchRun(runId, followRun(jetstream(observer), runId), () => {});
  await jetstream(submitter).publish(
    Subjects.RUNS_SUBMIT,
    JSON.stringify({ runId, workflow: submission.workflow, input: submission.input ?? {} }),
    { msgID: runId, headers: tracedHeaders({ [Headers.AUTHORIZATION]: `Bearer ${submission.token}` }) },
  );
  const timeoutMs = submission.timeoutMs ?? 30_000;
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`run ${runId} did not end within ${timeoutMs} ms`)), timeoutMs);
  });
  try {
    const result = await Promise.race([watching, timedOut]);
    const last = result.events.findLast((event) => "statusUpdate" in event);
    const error =
      last !== undefined && "statusUpdate" in last ? last.statusUpdate.metadata?.error : undefined;
    return { runId, state: result.state, output: result.output, error, ms: Date.now() - started };
  } finally {
    clearTimeout(timer);
  }
}
