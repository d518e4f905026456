import { DeliverPolicy, jetstream, jetstreamManager } from "@nats-io/jetstream";
import { type AuditRecord, AuditRecordSchema, GENESIS_HASH } from "../../../schemas/audit.ts";
import { ErrorCode } from "../../../schemas/errors.ts";
import { Streams } from "../../../schemas/subjects.ts";
import { auditHash } from "../../kit/audit-chain.ts";
import { LoomError } from "../../kit/index.ts";
import { connectCli } from "../connection.ts";
import { ExitCode } from "../exit-codes.ts";

/** One stored message of `LOOM_AUDIT`. */
export interface StoredRecord {
  seq: number;
  data: Uint8Array;
}

export interface ChainReport {
  records: number;
  /** The first record that breaks the chain, if any. */
  broken?: { seq: number; problem: string };
  lastHash: string;
}

/**
 * Walks the chain in stream order: each record must parse, carry the hash of its own content, and
 * name the previous record's hash. Stream sequences must have no gaps (deletes are denied, so a
 * gap means the store was tampered with).
 */
export function verifyChain(stored: Iterable<StoredRecord>): ChainReport {
  let previous = GENESIS_HASH;
  let expectedSeq = 1;
  let count = 0;
  for (const { seq, data } of stored) {
    count += 1;
    const broken = (problem: string): ChainReport => ({
      records: count,
      broken: { seq, problem },
      lastHash: previous,
    });
    if (seq !== expectedSeq) return broken(`records ${expectedSeq}..${seq - 1} are missing`);
    expectedSeq = seq + 1;
    let record: AuditRecord;
    try {
      record = AuditRecordSchema.parse(JSON.parse(new TextDecoder().decode(data)));
    } catch {
      return broken("the record is not a valid audit record");
    }
    const { hash, ...unhashed } = record;
    if (auditHash(unhashed) !== hash)
      return broken(`record ${record.id} does not match its hash (edited or forged)`);
    if (record.prevHash !== previous) {
      return broken(`record ${record.id} does not link to the record before it (inserted or reordered)`);
    }
    previous = hash;
  }
  return { records: count, lastHash: previous };
}

/** `loom audit verify`: exit 0 when the whole chain holds, 1 naming the first broken link. */
export async function auditVerifyCommand(options: { nats: string; json: boolean }): Promise<ExitCode> {
  const nc = await connectCli(options.nats);
  try {
    const report = verifyChain(await readAll(nc));
    if (options.json) console.log(JSON.stringify(report));
    else if (report.broken === undefined) {
      console.log(`audit chain intact: ${report.records} records, last hash ${report.lastHash}`);
    } else {
      console.log(`audit chain BROKEN at seq ${report.broken.seq}: ${report.broken.problem}`);
    }
    return report.broken === undefined ? ExitCode.OK : ExitCode.FAILED;
  } finally {
    await nc.close();
  }
}

export interface TailOptions {
  nats: string;
  follow: boolean;
  run?: string | undefined;
  lines: number;
  json: boolean;
}

/** `loom audit tail`: the last records (of one run with --run), and with --follow new ones as they come. */
export async function auditTailCommand(options: TailOptions): Promise<ExitCode> {
  const nc = await connectCli(options.nats);
  try {
    const jsm = await jetstreamManager(nc);
    const { state } = await streamInfo(jsm);
    const print = (record: AuditRecord) => {
      if (options.run !== undefined && record.runId !== options.run) return;
      console.log(options.json ? JSON.stringify(record) : auditLine(record));
    };
    const history = (await readAll(nc))
      .flatMap(({ data }) => {
        const parsed = AuditRecordSchema.safeParse(JSON.parse(new TextDecoder().decode(data)));
        return parsed.success ? [parsed.data] : [];
      })
      .filter((record) => options.run === undefined || record.runId === options.run);
    for (const record of options.lines > 0 ? history.slice(-options.lines) : []) print(record);
    if (!options.follow) return ExitCode.OK;
    const consumer = await jetstream(nc).consumers.get(Streams.AUDIT, {
      deliver_policy: DeliverPolicy.StartSequence,
      opt_start_seq: state.last_seq + 1,
    });
    const messages = await consumer.consume();
    const stop = () => messages.stop();
    process.once("SIGINT", stop);
    process.once("SIGTERM", stop);
    for await (const message of messages) {
      const parsed = AuditRecordSchema.safeParse(message.json());
      if (parsed.success) print(parsed.data);
      else console.log(`seq ${message.seq}: not a valid audit record`);
    }
    return ExitCode.OK;
  } finally {
    await nc.close();
  }
}

/** `HH:MM:SS  kind  principal  action resource  outcome  (rule)  run`: one record, no personal data. */
export function auditLine(record: AuditRecord): string {
  const outcome = record.effect ?? record.outcome ?? "";
  const rule = record.rule === undefined ? "" : ` by ${record.rule}`;
  const run =
    record.runId === undefined ? "" : `  run ${record.runId}${record.stepId ? `/${record.stepId}` : ""}`;
  const latency = record.latencyMs === undefined ? "" : `  ${record.latencyMs} ms`;
  return `${record.time.slice(11, 19)}  ${record.kind.padEnd(15)} ${record.principal.padEnd(10)} ${record.action ?? ""} ${record.resource}  ${outcome}${rule}${latency}${run}`;
}

async function streamInfo(jsm: Awaited<ReturnType<typeof jetstreamManager>>) {
  try {
    return await jsm.streams.info(Streams.AUDIT);
  } catch (cause) {
    throw new LoomError(
      ErrorCode.INVALID_INPUT,
      `there is no ${Streams.AUDIT} stream yet: is acp-policy running?`,
      {
        cause,
      },
    );
  }
}

/** Every stored record, in order, through an ordered consumer. */
async function readAll(nc: Awaited<ReturnType<typeof connectCli>>): Promise<StoredRecord[]> {
  const jsm = await jetstreamManager(nc);
  const { state } = await streamInfo(jsm);
  const stored: StoredRecord[] = [];
  if (state.messages === 0) return stored;
  const consumer = await jetstream(nc).consumers.get(Streams.AUDIT, { deliver_policy: DeliverPolicy.All });
  const messages = await consumer.consume();
  for await (const message of messages) {
    stored.push({ seq: message.seq, data: message.data });
    if (message.seq >= state.last_seq) break;
  }
  messages.stop();
  return stored;
}
