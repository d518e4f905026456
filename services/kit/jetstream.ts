import {
  type ConsumerConfig,
  DiscardPolicy,
  JetStreamApiCodes,
  JetStreamApiError,
  type JetStreamManager,
  jetstream,
  jetstreamManager,
  RetentionPolicy,
  StorageType,
  type StreamConfig,
} from "@nats-io/jetstream";
import { type KV, Kvm } from "@nats-io/kv";
import { type NatsConnection, nanos } from "@nats-io/transport-node";
import {
  type Bucket,
  bucketStream,
  bucketSubjects,
  SPANS_ALL,
  Streams,
  Subjects,
} from "../../schemas/subjects.ts";
import { retryBrokerFailures } from "./kv-cas.ts";

const DAY_MS = 24 * 60 * 60 * 1000;

type StreamDefinition = Partial<StreamConfig> & Pick<StreamConfig, "name" | "subjects">;

/** The streams of the bus. Each service creates, at start, the ones it uses that are absent. */
export const StreamDefinitions = {
  runs: {
    name: Streams.RUNS,
    subjects: [Subjects.RUNS_SUBMIT, Subjects.RUNS_DELEGATED],
    retention: RetentionPolicy.Limits,
    storage: StorageType.File,
    max_age: nanos(7 * DAY_MS),
    duplicate_window: nanos(10 * 60 * 1000),
  },
  events: {
    name: Streams.EVENTS,
    subjects: [Subjects.RUN_EVENTS_ALL],
    retention: RetentionPolicy.Limits,
    storage: StorageType.File,
    max_age: nanos(7 * DAY_MS),
    duplicate_window: nanos(2 * 60 * 1000),
  },
  audit: {
    name: Streams.AUDIT,
    subjects: [Subjects.AUDIT_ALL],
    retention: RetentionPolicy.Limits,
    storage: StorageType.File,
    discard: DiscardPolicy.New,
    deny_delete: true,
    deny_purge: true,
  },
  /** Finished spans for `loom runs trace`: a day of them, capped, oldest dropped first. */
  spans: {
    name: Streams.SPANS,
    subjects: [SPANS_ALL],
    retention: RetentionPolicy.Limits,
    storage: StorageType.File,
    discard: DiscardPolicy.Old,
    max_age: nanos(DAY_MS),
    max_bytes: 256 * 1024 * 1024,
  },
  /** One record per MCP call and per feedback verdict, for `loom tools stats`: a week, capped. */
  toolCalls: {
    name: Streams.TOOL_CALLS,
    subjects: [Subjects.TOOL_CALLS_ALL, Subjects.FEEDBACK_ALL],
    retention: RetentionPolicy.Limits,
    storage: StorageType.File,
    discard: DiscardPolicy.Old,
    max_age: nanos(7 * DAY_MS),
    max_bytes: 256 * 1024 * 1024,
  },
} as const satisfies Record<string, StreamDefinition>;

/** Replicas when `LOOM_STREAM_REPLICAS` is unset and the cluster has this many servers or more. */
const CLUSTER_REPLICAS = 3;

/**
 * How many replicas Loom's streams and buckets get: the configured number, else 3 on a cluster of
 * three or more servers (the client URLs the server gossips, itself included), else 1.
 */
export function streamReplicas(nc: NatsConnection, configured: number | undefined): number {
  if (configured !== undefined) return configured;
  const servers = nc.info?.cluster === undefined ? 1 : (nc.info.connect_urls?.length ?? 1);
  return servers >= CLUSTER_REPLICAS ? CLUSTER_REPLICAS : 1;
}

/**
 * Creates the stream with `replicas` when it is absent, and leaves an existing one as it is: a
 * stream's configuration is an operator's act (`loom streams replicate`), so no service's NATS user
 * may update, delete or purge any stream. A cluster still electing leaders (every service creating
 * its streams at once, say) times out: that is retried like any broker failure.
 */
export function ensureStream(
  jsm: JetStreamManager,
  definition: StreamDefinition,
  replicas: number,
): Promise<void> {
  return retryBrokerFailures(async () => {
    try {
      await jsm.streams.info(definition.name);
    } catch (error) {
      if (!(error instanceof JetStreamApiError && error.code === JetStreamApiCodes.StreamNotFound))
        throw error;
      await jsm.streams.add({ ...definition, num_replicas: replicas });
    }
  });
}

/**
 * The JetStream manager of `nc`, once JetStream answers: a restarted server whose JetStream is
 * still starting, or a cluster still electing its meta leader, is waited out, not a failed start.
 */
export function openJetStreamManager(nc: NatsConnection): Promise<JetStreamManager> {
  return retryBrokerFailures(() => jetstreamManager(nc));
}

/**
 * Creates the durable consumer `config.durable_name` on `stream` unless it exists. Only "not
 * found" leads to creating it; a broker failure is retried like any other.
 */
export function ensureConsumer(
  jsm: JetStreamManager,
  stream: string,
  config: Partial<ConsumerConfig> & { durable_name: string },
): Promise<void> {
  return retryBrokerFailures(async () => {
    try {
      await jsm.consumers.info(stream, config.durable_name);
    } catch (error) {
      if (!(error instanceof JetStreamApiError && error.code === JetStreamApiCodes.ConsumerNotFound))
        throw error;
      await jsm.consumers.add(stream, config);
    }
  });
}

/**
 * Opens a KV bucket, creating it with `replicas` when it is absent; an existing one is left as it
 * is. One request when it exists (its stream's info): the client's JetStream API check, a request
 * per bucket otherwise, is skipped, since a server without JetStream fails the info request anyway.
 */
export function openBucket(
  nc: NatsConnection,
  bucket: Bucket,
  options: { replicas: number; history?: number; ttlMs?: number },
): Promise<KV> {
  return retryBrokerFailures(() =>
    new Kvm(jetstream(nc, { checkAPI: false })).create(bucket, {
      history: options.history ?? 1,
      replicas: options.replicas,
      ...(options.ttlMs === undefined ? {} : { ttl: options.ttlMs }),
    }),
  );
}

/**
 * What makes a bucket's keys write-once: the broker refuses any second message on a key (a put,
 * an update, a delete or purge marker: `discard_new_per_subject`, nats-server 2.10+) and refuses
 * deleting or purging messages. No `max_age` either: a key that expired could be written again.
 */
const WRITE_ONCE = {
  max_msgs_per_subject: 1,
  discard: DiscardPolicy.New,
  discard_new_per_subject: true,
  allow_rollup_hdrs: false,
  deny_delete: true,
  deny_purge: true,
} as const satisfies Partial<StreamConfig>;

/**
 * The stream of a write-once KV bucket: what the KV client makes for a bucket of history 1, and
 * `WRITE_ONCE`. Made with `ensureStream` before the bucket is opened, so an existing bucket, even
 * an ordinary one, is left as it is (`writeOnceProblems` tells them apart).
 */
export function writeOnceBucketStream(bucket: Bucket): StreamDefinition {
  return {
    name: bucketStream(bucket),
    subjects: [bucketSubjects(bucket)],
    retention: RetentionPolicy.Limits,
    storage: StorageType.File,
    allow_direct: true,
    ...WRITE_ONCE,
  };
}

/**
 * Why a bucket's stream lets a key be written again (each reason a phrase); empty when the broker
 * keeps every key as first written, as `writeOnceBucketStream` makes it.
 */
export function writeOnceProblems(config: StreamConfig): string[] {
  const problems: string[] = [];
  if (config.max_msgs_per_subject !== 1) {
    problems.push(`it keeps ${config.max_msgs_per_subject} messages per key, not 1`);
  }
  if (config.discard !== DiscardPolicy.New || config.discard_new_per_subject !== true) {
    problems.push("a second write to a key replaces the first (discard_new_per_subject is off)");
  }
  if (config.deny_delete !== true) problems.push("its messages may be deleted (deny_delete is off)");
  if (config.deny_purge !== true) problems.push("its keys may be purged (deny_purge is off)");
  if (config.max_age > 0) problems.push("its keys expire (max_age is set) and may then be written again");
  return problems;
}

/**
 * The operator's act of making an existing bucket write-once in place (one made before Loom made
 * it so), keeping every key. Needs a NATS user that may update streams; answers whether it changed
 * anything.
 */
export async function makeBucketWriteOnce(jsm: JetStreamManager, bucket: Bucket): Promise<boolean> {
  const name = bucketStream(bucket);
  const { config } = await retryBrokerFailures(() => jsm.streams.info(name));
  if (writeOnceProblems(config).length === 0) return false;
  await retryBrokerFailures(() => jsm.streams.update(name, { ...config, ...WRITE_ONCE, max_age: 0 }));
  return true;
}

/** Whether a stream is one of Loom's: its own streams and the streams behind its KV buckets. */
export function isLoomStream(name: string): boolean {
  return name.startsWith("LOOM_") || name.startsWith("KV_loom_");
}

/**
 * The operator's act of moving every existing Loom stream and bucket to `replicas` (a stack made
 * on one server, now on a cluster): only the replica count changes. Needs a NATS user that may
 * update streams (`policy-admin`); answers the streams it moved.
 */
export async function replicateStreams(jsm: JetStreamManager, replicas: number): Promise<string[]> {
  const moved: string[] = [];
  for await (const { config } of jsm.streams.list()) {
    if (!isLoomStream(config.name) || config.num_replicas === replicas) continue;
    await retryBrokerFailures(() => jsm.streams.update(config.name, { ...config, num_replicas: replicas }));
    moved.push(config.name);
  }
  return moved;
}
