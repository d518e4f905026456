import {
  AckPolicy,
  DeliverPolicy,
  type JetStreamClient,
  type JetStreamManager,
  type JsMsg,
} from "@nats-io/jetstream";
import type { KV } from "@nats-io/kv";
import { nanos } from "@nats-io/transport-node";
import { type PushRegistration, PushRegistrationSchema } from "../../../schemas/a2a.ts";
import { RunEventSchema } from "../../../schemas/run.ts";
import { Consumers, runIdOfSubject, Streams, Subjects } from "../../../schemas/subjects.ts";
import {
  encodePayload,
  ensureConsumer,
  type Logger,
  parsePayload,
  retryBrokerFailures,
} from "../../kit/index.ts";
import { KvMirror } from "../../kit/kv-mirror.ts";
import { hasMasks } from "../../kit/masking.ts";
import { maskedEvent } from "../run-access.ts";
import { allowListedFetch } from "./outbound-fetch.ts";
import type { OutboundAllowList } from "./outbound-url.ts";

/** Deliveries of one event before its webhooks are given up on (the event stays in the stream). */
const MAX_DELIVERIES = 8;
const RETRY_DELAY_MS = 1_000;
/** Events this notifier may hold unacked, so also the most it remembers retries of. */
const MAX_ACK_PENDING = 1_000;
const POST_TIMEOUT_MS = 5_000;
/** How long acks of events without webhooks wait to go out together, and how many at most. */
const IDLE_ACK_DELAY_MS = 100;
const IDLE_ACK_BATCH = 256;

/**
 * Webhooks A2A clients register for their tasks, in KV `loom_push` (`<taskId>.<configId>`), and
 * mirrored in memory from a watch, so finding a run's webhooks costs no NATS request per run event.
 * Only URLs the allow-list admits are accepted: a webhook is a request Loom makes on a client's
 * behalf, and must not reach into internal addresses. Each is kept with the masks its registrant's
 * `runs.read` decision asked for, which every event is given before it is posted there.
 */
export class PushRegistry {
  readonly #kv: KV;
  readonly #mirror: KvMirror<typeof PushRegistrationSchema>;
  /** Checked when a webhook is registered and again before every delivery. */
  readonly allowList: OutboundAllowList;

  private constructor(kv: KV, mirror: KvMirror<typeof PushRegistrationSchema>, allowList: OutboundAllowList) {
    this.#kv = kv;
    this.#mirror = mirror;
    this.allowList = allowList;
  }

  /** Opens the registry once the bucket's present registrations are mirrored. */
  static async open(kv: KV, allowList: OutboundAllowList, log: Logger): Promise<PushRegistry> {
    const mirror = await KvMirror.open(kv, PushRegistrationSchema, "push config", log);
    return new PushRegistry(kv, mirror, allowList);
  }

  /** Stores a webhook; resolves once this replica's notifier will find it. */
  async save(config: PushRegistration): Promise<PushRegistration> {
    await this.allowList.check(config.url);
    const revision = await this.#kv.put(
      `${config.taskId}.${config.id}`,
      encodePayload(PushRegistrationSchema, config, "push config"),
    );
    await this.#mirror.reached(revision);
    return config;
  }

  async get(taskId: string, id: string): Promise<PushRegistration | undefined> {
    const entry = await this.#kv.get(`${taskId}.${id}`);
    return entry?.operation === "PUT"
      ? parsePayload(PushRegistrationSchema, entry.value, "push config")
      : undefined;
  }

  /**
   * The task's webhooks, from the mirror. Another replica's registration shows here as soon as
   * the watch delivers it, which is before the run's next events reach the notifier in practice:
   * the registration is stored before the events that follow it are published.
   */
  list(taskId: string): PushRegistration[] {
    return this.#mirror.under(taskId);
  }

  /** Removes a webhook; resolves once this replica's notifier no longer finds it. */
  async delete(taskId: string, id: string): Promise<void> {
    const key = `${taskId}.${id}`;
    await this.#kv.delete(key);
    // The delete answers no revision; its marker's is what the mirror must reach.
    const marker = await this.#kv.get(key);
    if (marker !== null) await this.#mirror.reached(marker.revision);
  }

  close(): void {
    this.#mirror.close();
  }
}

/**
 * POSTs every event of a task with webhooks to each of them, in order, at least once: one durable
 * consumer shared by the replicas takes each event once, and acks it only after every webhook
 * answered 2xx; a failure is retried (redelivered) with a delay. Each webhook is sent the event
 * masked as its registrant reads the run (`maskedEvent`, as SubscribeToTask shows it). Events of
 * tasks without webhooks (nearly all) are acked together a moment later, in one socket write
 * rather than one each: an ack lost with this process only has that event taken again, and found
 * without webhooks again.
 */
export async function startPushNotifier(options: {
  js: JetStreamClient;
  jsm: JetStreamManager;
  registry: PushRegistry;
  log: Logger;
}): Promise<{ stop(): void }> {
  await ensureConsumer(options.jsm, Streams.EVENTS, {
    durable_name: Consumers.A2A_PUSH,
    filter_subject: Subjects.RUN_EVENTS_ALL,
    ack_policy: AckPolicy.Explicit,
    deliver_policy: DeliverPolicy.New,
    ack_wait: nanos(30_000),
    max_deliver: MAX_DELIVERIES,
    max_ack_pending: MAX_ACK_PENDING,
  });
  const consumer = await retryBrokerFailures(() =>
    options.js.consumers.get(Streams.EVENTS, Consumers.A2A_PUSH),
  );
  const messages = await consumer.consume();
  const idle = new IdleAcks();
  // The webhooks each event being retried has reached already, by its stream sequence: a retry
  // posts only to those that failed, so one failing webhook does not repeat every event to the
  // others (another replica taking the retry over may still repeat them: delivery is at least once).
  const reached = new Map<number, Set<string>>();
  void (async () => {
    for await (const message of messages) {
      const runId = runIdOfSubject(message.subject);
      const sequence = message.info.streamSequence;
      const configs = options.registry.list(runId);
      if (configs.length === 0) {
        reached.delete(sequence);
        idle.add(message);
        continue;
      }
      const done = reached.get(sequence) ?? new Set<string>();
      const failures: unknown[] = [];
      await Promise.all(
        configs
          .filter((config) => !done.has(config.id))
          .map(async (config) => {
            const body = bodyFor(config, message.data);
            if (body === undefined) {
              options.log.warn(
                { run_id: runId, webhook: config.id },
                "webhook registered before webhooks were masked is sent nothing: register it again",
              );
              return;
            }
            try {
              await post(options.registry.allowList, config, body);
              done.add(config.id);
            } catch (error) {
              failures.push(error);
            }
          }),
      );
      if (failures.length === 0) {
        reached.delete(sequence);
        message.ack();
        continue;
      }
      const last = message.info.deliveryCount >= MAX_DELIVERIES;
      options.log.warn(
        {
          err: failures[0],
          failed: failures.length,
          run_id: runId,
          delivery: message.info.deliveryCount,
          given_up: last,
        },
        "webhook delivery failed",
      );
      if (last) {
        reached.delete(sequence);
        message.term();
      } else {
        reached.set(sequence, done);
        // A retry another replica took over is never seen here again: the oldest are forgotten.
        if (reached.size > MAX_ACK_PENDING) reached.delete(reached.keys().next().value as number);
        message.nak(RETRY_DELAY_MS * message.info.deliveryCount);
      }
    }
  })();
  return {
    stop: () => {
      idle.flush();
      void messages.stop();
    },
  };
}

/** Acks of events nobody is to be told of, sent together after a short wait or once many are due. */
class IdleAcks {
  readonly #due: JsMsg[] = [];
  #timer: NodeJS.Timeout | undefined;

  add(message: JsMsg): void {
    this.#due.push(message);
    if (this.#due.length >= IDLE_ACK_BATCH) this.flush();
    else this.#timer ??= setTimeout(() => this.flush(), IDLE_ACK_DELAY_MS);
  }

  flush(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    for (const message of this.#due.splice(0)) message.ack();
  }
}

/**
 * The event as the webhook's registrant may read the run: as it is for one whose reads are not
 * masked, masked for it otherwise; undefined for a registration kept without its masks.
 */
function bodyFor(config: PushRegistration, data: Uint8Array): Uint8Array | undefined {
  const obligations = config.readerObligations;
  if (obligations === undefined) return undefined;
  if (!hasMasks(obligations)) return data;
  const event = parsePayload(RunEventSchema, data, "run event");
  return encodePayload(RunEventSchema, maskedEvent(event, obligations), "run event");
}

/**
 * One delivery. The URL is checked again (the allow-list or the host's address may have changed
 * since it was registered), and a redirect is a failed delivery, never followed: it could point
 * anywhere, internal listeners included.
 */
async function post(allowList: OutboundAllowList, config: PushRegistration, body: Uint8Array): Promise<void> {
  const headers: Record<string, string> = { "content-type": "application/json" };
  if (config.token !== undefined && config.token !== "") headers["X-A2A-Notification-Token"] = config.token;
  if (config.authentication !== undefined) {
    headers.authorization = `${config.authentication.scheme} ${config.authentication.credentials}`;
  }
  const response = await allowListedFetch(allowList)(config.url, {
    method: "POST",
    headers,
    body,
    signal: AbortSignal.timeout(POST_TIMEOUT_MS),
  });
  await response.body?.cancel();
  if (!response.ok) throw new Error(`webhook ${config.url} answered ${response.status}`);
}
