import type { TaskState } from "../../../schemas/a2a.ts";
import { RunGetContract, RunListContract } from "../../../schemas/contracts.ts";
import type { RunListRequest } from "../../../schemas/run-read.ts";
import { Subjects } from "../../../schemas/subjects.ts";
import { connectCli, requestAs } from "../connection.ts";
import { ExitCode } from "../exit-codes.ts";
import { formatJson, stateName, table } from "../render.ts";

/**
 * `loom runs get <runId>`: a run's state, output or error, read through the orchestrators'
 * authorised API: policy decides whether the caller may read it (`runs.read`) and what is masked.
 */
export async function runsGetCommand(
  runId: string,
  options: { nats: string; token: string | undefined; json: boolean },
): Promise<ExitCode> {
  const nc = await connectCli(options.nats);
  try {
    const { traceContext: _traceContext, ...record } = await requestAs(
      nc,
      Subjects.RUNS_GET,
      RunGetContract,
      { runId },
      options.token,
    );
    if (options.json) {
      console.log(JSON.stringify({ ...record, state: stateName(record.state) }));
      return ExitCode.OK;
    }
    const version = record.workflowVersion === undefined ? "" : ` v${record.workflowVersion}`;
    console.log(`run       ${record.runId}`);
    console.log(`workflow  ${record.workflowId}${version}`);
    console.log(`state     ${stateName(record.state)}`);
    if (record.startedBy !== undefined) console.log(`started   by ${record.startedBy}`);
    console.log(`created   ${record.createdAt}`);
    console.log(`updated   ${record.updatedAt}`);
    if (record.error !== undefined) console.log(`error     ${record.error.code}: ${record.error.message}`);
    if (record.output !== undefined) console.log(`output\n${formatJson(record.output)}`);
    return ExitCode.OK;
  } finally {
    await nc.close();
  }
}

/** `loom runs list`: the runs the caller may read, newest first, narrowed by the filters given. */
export async function runsListCommand(
  filters: { state?: TaskState; workflow?: string; since?: string; limit?: number; cursor?: string },
  options: { nats: string; token: string | undefined; json: boolean },
): Promise<ExitCode> {
  const nc = await connectCli(options.nats);
  try {
    const listRequest: RunListRequest = Object.fromEntries(
      Object.entries(filters).filter(([, value]) => value !== undefined),
    );
    const reply = await requestAs(nc, Subjects.RUNS_LIST, RunListContract, listRequest, options.token);
    if (options.json) {
      console.log(
        JSON.stringify({
          ...reply,
          runs: reply.runs.map((run) => ({ ...run, state: stateName(run.state) })),
        }),
      );
      return ExitCode.OK;
    }
    if (reply.runs.length === 0) {
      console.log("no runs you may read match");
      return ExitCode.OK;
    }
    console.log(
      table(
        ["RUN", "WORKFLOW", "STATE", "STARTED BY", "UPDATED"],
        reply.runs.map((run) => [
          run.runId,
          run.workflowVersion === undefined ? run.workflowId : `${run.workflowId} v${run.workflowVersion}`,
          stateName(run.state),
          run.startedBy ?? "",
          run.updatedAt,
        ]),
      ),
    );
    const more = reply.nextCursor === undefined ? "" : `; next page: --cursor ${reply.nextCursor}`;
    console.log(`${reply.runs.length} of ${reply.total}${more}`);
    return ExitCode.OK;
  } finally {
    await nc.close();
  }
}
