import { DeliverPolicy, jetstream, jetstreamManager } from "@nats-io/jetstream";
import { type AuditRecord, AuditRecordSchema, type AuditReport } from "../../../schemas/audit.ts";
import { Streams } from "../../../schemas/subjects.ts";
import { auditStreamInfo, readAuditKeys, readAuditStream, verifyAudit } from "../../kit/audit-verify.ts";
import { connectCli } from "../connection.ts";
import { ExitCode } from "../exit-codes.ts";

/** One line per writer, then what is wrong with the stream. */
export function describeAudit(report: AuditReport): string[] {
  const lines = report.writers.map((writer) => {
    const name = `${writer.service}/${writer.writer}`;
    if (writer.status === "intact") return `${name}: intact, ${writer.records} records`;
    if (writer.status === "unknown signer") {
      return `${name}: UNKNOWN SIGNER, no key pinned for it (${writer.records} records)`;
    }
    return `${name}: BROKEN at seq ${writer.broken?.seq} (stream seq ${writer.broken?.streamSeq}): ${writer.broken?.problem}`;
  });
  lines.push(...report.stream.map((problem) => `stream: ${problem}`));
  if (report.pinsReplaceable.length > 0) lines.push(replaceablePinsLine(report.pinsReplaceable));
  lines.push(
    report.intact
      ? `audit intact: ${report.records} records from ${report.writers.length} writers`
      : `audit NOT intact: ${report.records} records from ${report.writers.length} writers`,
  );
  return lines;
}

/** What an operator of a stack whose pins bucket predates write-once pins must know, and do. */
export function replaceablePinsLine(problems: string[]): string {
  return `pins: REPLACEABLE, ${problems.join("; ")}: a service's NATS user can replace its own service's pinned keys and make a genuine chain look broken; make it write-once with \`loom streams lock-pins\` as the operator (docs/security.md, "Audit")`;
}

/** `loom audit verify`: exit 0 when every writer's chain holds, 1 naming each broken one. */
export async function auditVerifyCommand(options: { nats: string; json: boolean }): Promise<ExitCode> {
  const nc = await connectCli(options.nats);
  try {
    const report = await verifyAudit(await readAuditStream(nc), await readAuditKeys(nc));
    if (options.json) console.log(JSON.stringify(report));
    else for (const line of describeAudit(report)) console.log(line);
    return report.intact ? ExitCode.OK : ExitCode.FAILED;
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
    const { state } = await auditStreamInfo(jsm);
    const print = (record: AuditRecord) => {
      if (options.run !== undefined && record.runId !== options.run) return;
      console.log(options.json ? JSON.stringify(record) : auditLine(record));
    };
    const history = (await readAuditStream(nc))
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
