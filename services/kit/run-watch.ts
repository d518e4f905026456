import { setTimeout as delay } from "node:timers/promises";
import { DeliverPolicy, type JetStreamClient, type JetStreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { context, ROOT_CONTEXT } from "@opentelemetry/api";
import { type TaskState, TERMINAL_STATES } from "../../schemas/a2a.ts";
import { RunWatchContract } from "../../schemas/contracts.ts";
import { ErrorCode, RETRYABLE_CODES } from "../../schemas/errors.ts";
import { type RunEvent, RunEventSchema } from "../../schemas/run.ts";
import type { RunWatchReply } from "../../schemas/run-read.ts";
import { Headers, runEventsSubject, Streams, Subjects } from "../../schemas/subjects.ts";
import { parsePayload, request } from "./bus.ts";
import { LoomError } from "./errors.ts";

/** How long one watch request waits for new events, and the margin its reply gets on top. */
const WATCH_POLL_MS = 10_000;
const WATCH_REPLY_MARGIN_MS = 5_000;
const RETRY_MS = 200;

export interface WatchResult {
  state: TaskState;
  /** The run's output artifact data, when it completed. */
  output: unknown;
  events: RunEvent[];
}

/**
 * A run's events from the start, as they come, until one whose state `stopAt` holds (by default
 * a terminal state). Because the events are in a stream, a follower that starts late misses
 * nothing. Unreadable events are reported and skipped.
 */
export async function* followRun(
  js: JetStreamClient,
  runId: string,
  options: {
    stopAt?: (state: TaskState) => boolean;
    onInvalid?: (problem: string) => void;
    /** Only events stored after this stream sequence (see `lastEventSequence`). */
    afterSequence?: number;
  } = {},
): AsyncGenerator<RunEvent, void, undefined> {
  const stopAt = options.stopAt ?? ((state: TaskState) => TERMINAL_STATES.has(state));
  const consumer = await js.consumers.get(Streams.EVENTS, {
    // A single string (not an array) keeps this working on nats-server 2.9.
    filter_subjects: runEventsSubject(runId),
    ...(options.afterSequence === undefined
      ? { deliver_policy: DeliverPolicy.All }
      : { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: options.afterSequence + 1 }),
  });
  const messages = await consumer.consume();
  try {
    for await (const message of messages) {
      let event: RunEvent;
      try {
        event = parsePayload(RunEventSchema, message.data, "run event");
      } catch (error) {
        options.onInvalid?.(error instanceof Error ? error.message : String(error));
        continue;
      }
      yield event;
      if ("statusUpdate" in event && stopAt(event.statusUpdate.status.state)) return;
    }
  } finally {
    messages.stop();
  }
}

/**
 * Follows a run to its end through the orchestrators' authorised watch API (`loom.v1.runs.watch`,
 * a long poll decided by policy as `runs.subscribe` and masked for the caller): what a client
 * uses, never the events stream itself. A run submitted a moment ago may not be stored yet: it is
 * asked for again until `waitForRunMs` passes; a timeout or no orchestrator for a moment (one
 * restarting) is waited out, and the watch goes on from the last event it had.
 */
export async function* pollRunEvents(
  nc: NatsConnection,
  runId: string,
  options: {
    authorization: string | undefined;
    waitForRunMs: number;
    /**
     * Stop, before the run ends, once no new event came for this long: the events so far, not
     * those to come (`loom runs events` without `--follow`).
     */
    untilIdleMs?: number;
  },
): AsyncGenerator<RunEvent, void, undefined> {
  const giveUpAt = Date.now() + options.waitForRunMs;
  const waitMs = options.untilIdleMs ?? WATCH_POLL_MS;
  let afterSequence = 0;
  for (;;) {
    let reply: RunWatchReply;
    try {
      // Outside the caller's trace: how often a watcher polls is not part of the run's work, and
      // the run's trace keeps the shape of its workflow.
      reply = await context.with(ROOT_CONTEXT, () =>
        request(
          nc,
          Subjects.RUNS_WATCH,
          RunWatchContract,
          { runId, afterSequence, waitMs },
          {
            timeoutMs: waitMs + WATCH_REPLY_MARGIN_MS,
            headers: { [Headers.AUTHORIZATION]: options.authorization },
          },
        ),
      );
    } catch (error) {
      if (!(error instanceof LoomError)) throw error;
      // An orchestrator restarting (or none up for a moment) loses no event: ask again from here.
      const transient = RETRYABLE_CODES.has(error.code);
      const notStoredYet = error.code === ErrorCode.RUN_NOT_FOUND && Date.now() <= giveUpAt;
      if (!transient && !notStoredYet) throw error;
      await delay(RETRY_MS);
      continue;
    }
    afterSequence = reply.lastSequence;
    if (reply.events.length === 0 && options.untilIdleMs !== undefined) return;
    for (const event of reply.events) {
      yield event;
      if ("statusUpdate" in event && TERMINAL_STATES.has(event.statusUpdate.status.state)) return;
    }
  }
}

/** Follows a run's events to its end, calling `onEvent` for each; resolves with its end state and output. */
export async function watchRun(
  runId: string,
  source: AsyncIterable<RunEvent>,
  onEvent: (event: RunEvent) => void,
): Promise<WatchResult> {
  const events: RunEvent[] = [];
  let output: unknown;
  for await (const event of source) {
    events.push(event);
    onEvent(event);
    if ("artifactUpdate" in event) {
      const data = event.artifactUpdate.artifact.parts.find((part) => "data" in part);
      if (data !== undefined && "data" in data) output = data.data;
    } else if (TERMINAL_STATES.has(event.statusUpdate.status.state)) {
      return { state: event.statusUpdate.status.state, output, events };
    }
  }
  throw new Error(`stopped watching run ${runId} before it ended`);
}

/**
 * A long poll over a run's events: those stored after `afterSequence`, as soon as there is at least
 * one (up to `maxBytes` of them), or none when `waitMs` passes first. `lastSequence` is where the next poll
 * starts; unreadable events are reported and passed over.
 */
export async function readRunEvents(
  js: JetStreamClient,
  runId: string,
  options: {
    afterSequence: number;
    waitMs: number;
    /** Stop after this many bytes of events, so the reply stays under the broker's max_payload. */
    maxBytes: number;
    onInvalid?: (problem: string) => void;
  },
): Promise<{ events: RunEvent[]; lastSequence: number }> {
  const consumer = await js.consumers.get(Streams.EVENTS, {
    filter_subjects: runEventsSubject(runId),
    deliver_policy: DeliverPolicy.StartSequence,
    opt_start_seq: options.afterSequence + 1,
  });
  const messages = await consumer.consume();
  const timer = setTimeout(() => messages.stop(), options.waitMs);
  const events: RunEvent[] = [];
  let lastSequence = options.afterSequence;
  let bytes = 0;
  try {
    for await (const message of messages) {
      lastSequence = message.seq;
      bytes += message.data.byteLength;
      try {
        events.push(parsePayload(RunEventSchema, message.data, "run event"));
      } catch (error) {
        options.onInvalid?.(error instanceof Error ? error.message : String(error));
      }
      if (message.info.pending === 0 || bytes >= options.maxBytes) break;
    }
  } finally {
    clearTimeout(timer);
    messages.stop();
  }
  return { events, lastSequence };
}

/** The stream sequence of a run's latest event (0 when it has none), to follow only what comes next. */
export async function lastEventSequence(jsm: JetStreamManager, runId: string): Promise<number> {
  const last = await jsm.streams
    .getMessage(Streams.EVENTS, { last_by_subj: runEventsSubject(runId) })
    .catch(() => null);
  return last?.seq ?? 0;
}
