import {
  DiscardPolicy,
  type JetStreamManager,
  RetentionPolicy,
  StorageType,
  type StreamConfig,
} from "@nats-io/jetstream";
import { type KV, Kvm } from "@nats-io/kv";
import { type NatsConnection, nanos } from "@nats-io/transport-node";
import { type Bucket, SPANS_ALL, Streams, Subjects } from "../../schemas/subjects.ts";

const DAY_MS = 24 * 60 * 60 * 1000;

type StreamDefinition = Partial<StreamConfig> & Pick<StreamConfig, "name" | "subjects">;

/** The streams of the bus. Each service ensures, at start, the ones it uses. */
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

/** Creates the stream, or brings an existing one to this configuration. */
export async function ensureStream(jsm: JetStreamManager, definition: StreamDefinition): Promise<void> {
  let existing: Awaited<ReturnType<typeof jsm.streams.info>>;
  try {
    existing = await jsm.streams.info(definition.name);
  } catch {
    await jsm.streams.add(definition);
    return;
  }
  // Replicas are the operator's to set on a cluster (`nats stream edit --replicas 3`): keep them.
  await jsm.streams.update(definition.name, { ...definition, num_replicas: existing.config.num_replicas });
}

/** Opens a KV bucket, creating it on first use. */
export async function openBucket(
  nc: NatsConnection,
  bucket: Bucket,
  options: { history?: number; ttlMs?: number } = {},
): Promise<KV> {
  return new Kvm(nc).create(bucket, {
    history: options.history ?? 1,
    ...(options.ttlMs === undefined ? {} : { ttl: options.ttlMs }),
  });
}
