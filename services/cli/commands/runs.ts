import { Kvm } from "@nats-io/kv";
import { ErrorCode } from "../../../schemas/errors.ts";
import { RunRecordSchema } from "../../../schemas/run.ts";
import { Buckets } from "../../../schemas/subjects.ts";
import { LoomError, parsePayload } from "../../kit/index.ts";
import { connectCli } from "../connection.ts";
import { ExitCode } from "../exit-codes.ts";
import { formatJson, stateName } from "../render.ts";

/** `loom runs get <runId>`: a run's state, output or error, from KV `loom_runs`. */
export async function runsGetCommand(
  runId: string,
  options: { nats: string; json: boolean },
): Promise<ExitCode> {
  const nc = await connectCli(options.nats);
  try {
    const kv = await new Kvm(nc).open(Buckets.RUNS);
    const entry = await kv.get(runId);
    if (entry === null || entry.operation !== "PUT") {
      throw new LoomError(ErrorCode.RUN_NOT_FOUND, `no run with id ${runId}`);
    }
    // The stored snapshot and definition are internals, not for display.
    const {
      snapshot: _snapshot,
      definition: _definition,
      definitionRef: _definitionRef,
      ...record
    } = parsePayload(RunRecordSchema, entry.value, `run record ${runId}`);
    if (options.json) {
      console.log(JSON.stringify({ ...record, state: stateName(record.state) }));
      return ExitCode.OK;
    }
    const version = record.workflowVersion === undefined ? "" : ` v${record.workflowVersion}`;
    console.log(`run       ${record.runId}`);
    console.log(`workflow  ${record.workflowId}${version}`);
    console.log(`state     ${stateName(record.state)}`);
    console.log(`created   ${record.createdAt}`);
    console.log(`updated   ${record.updatedAt}`);
    if (record.error !== undefined) console.log(`error     ${record.error.code}: ${record.error.message}`);
    if (record.output !== undefined) console.log(`output\n${formatJson(record.output)}`);
    return ExitCode.OK;
  } finally {
    await nc.close();
  }
}
