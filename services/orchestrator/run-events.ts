import { randomUUID } from "node:crypto";
import type { JetStreamClient } from "@nats-io/jetstream";
import { type Artifact, Role, shortStateName, TaskState } from "../../schemas/a2a.ts";
import type { RunEvent, RunEventMetadata } from "../../schemas/run.ts";
import { runEventsSubject } from "../../schemas/subjects.ts";
import { encodeJson, recordRunState, retryBrokerFailures, tracedHeaders } from "../kit/index.ts";

export interface RunRef {
  runId: string;
  contextId: string;
}

/**
 * Publishes a run's A2A events to `LOOM_EVENTS`. `dedupeKey` names the logical event, so one
 * republished after a crash is stored once.
 */
export class RunEvents {
  readonly #js: JetStreamClient;

  constructor(js: JetStreamClient) {
    this.#js = js;
  }

  async status(
    run: RunRef,
    state: TaskState,
    text: string,
    dedupeKey: string,
    metadata: RunEventMetadata = {},
  ): Promise<void> {
    await this.#publish(
      run,
      {
        statusUpdate: {
          taskId: run.runId,
          contextId: run.contextId,
          status: {
            state,
            timestamp: new Date().toISOString(),
            message: {
              messageId: randomUUID(),
              role: Role.AGENT,
              taskId: run.runId,
              contextId: run.contextId,
              parts: [{ text }],
            },
          },
          metadata,
        },
      },
      dedupeKey,
    );
    // A run is "working" once per step; the metric counts runs, so only the other states.
    if (state !== TaskState.WORKING) recordRunState(shortStateName(state));
  }

  async artifact(run: RunRef, artifact: Artifact, dedupeKey: string): Promise<void> {
    await this.#publish(
      run,
      { artifactUpdate: { taskId: run.runId, contextId: run.contextId, artifact, lastChunk: true } },
      dedupeKey,
    );
  }

  async #publish(run: RunRef, event: RunEvent, dedupeKey: string): Promise<void> {
    // Built here from typed values: not parsed again on its way out; watchers parse what they read.
    const payload = encodeJson(event);
    // The dedupe id makes a publish whose PubAck was lost safe to send again.
    await retryBrokerFailures(() =>
      this.#js.publish(runEventsSubject(run.runId), payload, {
        msgID: `${run.runId}:${dedupeKey}`,
        headers: tracedHeaders(),
      }),
    );
  }
}
