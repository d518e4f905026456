import { DeliverPolicy, type JetStreamClient } from "@nats-io/jetstream";
import { type TaskState, TERMINAL_STATES } from "../../schemas/a2a.ts";
import { type RunEvent, RunEventSchema } from "../../schemas/run.ts";
import { runEventsSubject, Streams } from "../../schemas/subjects.ts";
import { parsePayload } from "../kit/index.ts";

export interface WatchResult {
  state: TaskState;
  /** The run's output artifact data, when it completed. */
  output: unknown;
  events: RunEvent[];
}

/**
 * Replays a run's events from the start and follows them until a terminal state. Because the
 * events are in a stream, a watcher that starts late misses nothing.
 */
export async function watchRun(
  js: JetStreamClient,
  runId: string,
  onEvent: (event: RunEvent) => void,
  onInvalid: (problem: string) => void,
): Promise<WatchResult> {
  const consumer = await js.consumers.get(Streams.EVENTS, {
    // A single string (not an array) keeps this working on nats-server 2.9.
    filter_subjects: runEventsSubject(runId),
    deliver_policy: DeliverPolicy.All,
  });
  const messages = await consumer.consume();
  const events: RunEvent[] = [];
  let output: unknown;
  try {
    for await (const message of messages) {
      let event: RunEvent;
      try {
        event = parsePayload(RunEventSchema, message.data, "run event");
      } catch (error) {
        onInvalid(error instanceof Error ? error.message : String(error));
        continue;
      }
      events.push(event);
      onEvent(event);
      if ("artifactUpdate" in event) {
        const data = event.artifactUpdate.artifact.parts.find((part) => "data" in part);
        if (data !== undefined && "data" in data) output = data.data;
        continue;
      }
      const { state } = event.statusUpdate.status;
      if (TERMINAL_STATES.has(state)) return { state, output, events };
    }
  } finally {
    messages.stop();
  }
  throw new Error(`stopped watching run ${runId} before it ended`);
}
