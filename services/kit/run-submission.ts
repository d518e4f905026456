import type { JetStreamClient, PubAck } from "@nats-io/jetstream";
import { type RunSubmission, RunSubmissionSchema } from "../../schemas/run.ts";
import { Headers, Subjects } from "../../schemas/subjects.ts";
import { encodePayload, tracedHeaders } from "./bus.ts";
import { SpanKind, withSpan } from "./telemetry.ts";

/**
 * Publishes a run submission to `LOOM_RUNS`, deduplicated by its run id, inside the
 * `send loom.v1.runs.submit` PRODUCER span that the orchestrator's `process` span continues: the
 * same hop in a run's trace whoever submits (the CLI, the A2A edge, a workflow delegated to). A
 * delegate step's child run goes to `loom.v1.runs.delegated`, where only an orchestrator publishes.
 */
export function publishSubmission(
  js: JetStreamClient,
  submission: RunSubmission,
  authorization: string | undefined,
  subject: typeof Subjects.RUNS_SUBMIT | typeof Subjects.RUNS_DELEGATED = Subjects.RUNS_SUBMIT,
): Promise<PubAck> {
  return withSpan(
    `send ${subject}`,
    {
      kind: SpanKind.PRODUCER,
      attributes: {
        "messaging.system": "nats",
        "messaging.destination.name": subject,
        "messaging.operation.type": "send",
        "messaging.message.id": submission.runId,
      },
    },
    () =>
      js.publish(subject, encodePayload(RunSubmissionSchema, submission, "run submission"), {
        msgID: submission.runId,
        headers: tracedHeaders({ [Headers.AUTHORIZATION]: authorization }),
      }),
  );
}
