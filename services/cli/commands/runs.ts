import type { TaskState } from "../../../schemas/a2a.ts";
import { RunGetContract, RunListContract, RunRerunContract } from "../../../schemas/contracts.ts";
import type { RunEvent } from "../../../schemas/run.ts";
import type { RunListRequest } from "../../../schemas/run-read.ts";
import { Headers, Subjects } from "../../../schemas/subjects.ts";
import { pollRunEvents, request, watchRun } from "../../kit/index.ts";
import { bearerOf, connectCli, requestAs } from "../connection.ts";
import { ExitCode, exitCodeForState } from "../exit-codes.ts";
import { formatJson, stateName, statusLine, table } from "../render.ts";
import { renderRunView } from "../run-view.ts";

/** How long `rerun --watch` waits for the new run to be stored (it goes through the submissions stream). */
const WAIT_FOR_RERUN_MS = 60_000;
const RERUN_TIMEOUT_MS = 15_000;
/** Without `--follow`, the event history ends once no new event came for this long. */
const HISTORY_IDLE_MS = 1_000;

interface ReadOptions {
  nats: string;
  token: string | undefined;
  json: boolean;
}

/**
 * `loom runs get <runId>`: a run's state, each step as a timeline, what a waiting run asks and who
 * may answer, its output or error; read through the orchestrators' authorised API: policy decides
 * whether the caller may read it (`runs.read`) and what is masked.
 */
export async function runsGetCommand(runId: string, options: ReadOptions): Promise<ExitCode> {
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
    console.log(renderRunView(record));
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

/** One event as `loom runs events` prints it: a status line, or the output an artifact carries. */
function printEvent(event: RunEvent, json: boolean): void {
  if (json) {
    console.log(JSON.stringify(event));
    return;
  }
  const line = statusLine(event);
  if (line !== undefined) {
    console.log(line);
    return;
  }
  if ("artifactUpdate" in event) {
    const data = event.artifactUpdate.artifact.parts.find((part) => "data" in part);
    if (data !== undefined && "data" in data) console.log(`output:\n${formatJson(data.data)}`);
  }
}

/**
 * `loom runs events <runId> [--follow]`: the run's events so far, through the orchestrators'
 * authorised watch API (`runs.subscribe`, masked for the caller); with `--follow`, then the ones to
 * come until the run ends, exiting as `submit --watch` does (0 completed, 1 failed, 2 rejected).
 */
export async function runsEventsCommand(
  runId: string,
  options: ReadOptions & { follow: boolean },
): Promise<ExitCode> {
  const nc = await connectCli(options.nats);
  try {
    return await followEvents(nc, runId, options, {
      waitForRunMs: 0,
      ...(options.follow ? {} : { untilIdleMs: HISTORY_IDLE_MS }),
    });
  } finally {
    await nc.close();
  }
}

async function followEvents(
  nc: Awaited<ReturnType<typeof connectCli>>,
  runId: string,
  options: ReadOptions,
  watch: { waitForRunMs: number; untilIdleMs?: number },
): Promise<ExitCode> {
  const events = pollRunEvents(nc, runId, { authorization: bearerOf(options.token), ...watch });
  if (watch.untilIdleMs !== undefined) {
    for await (const event of events) printEvent(event, options.json);
    return ExitCode.OK;
  }
  const result = await watchRun(runId, events, (event) => printEvent(event, options.json));
  return exitCodeForState(result.state);
}

/**
 * `loom runs rerun <runId> [--from <step>] [--watch]`: starts a failed or canceled run again as a
 * new run from `--from` (by default where it stopped), reusing the recorded results of the steps
 * before it. Policy decides `runs.rerun` on the run, and `workflow.start` for the new one.
 */
export async function runsRerunCommand(
  runId: string,
  options: ReadOptions & { from: string | undefined; watch: boolean },
): Promise<ExitCode> {
  const nc = await connectCli(options.nats);
  try {
    // Asked once: a rerun is a new start, and one asked again after a lost reply would be a second.
    const reply = await request(
      nc,
      Subjects.RUNS_RERUN,
      RunRerunContract,
      { runId, ...(options.from === undefined ? {} : { from: options.from }) },
      { timeoutMs: RERUN_TIMEOUT_MS, headers: { [Headers.AUTHORIZATION]: bearerOf(options.token) } },
    );
    const { reused, from } = reply.rerunOf;
    if (options.json) console.log(JSON.stringify(reply));
    else {
      console.log(`run ${reply.runId}`);
      console.log(
        `rerun of ${runId} from step ${from}; reused: ${reused.length === 0 ? "nothing" : reused.join(", ")}`,
      );
    }
    if (!options.watch) return ExitCode.OK;
    return await followEvents(nc, reply.runId, options, { waitForRunMs: WAIT_FOR_RERUN_MS });
  } finally {
    await nc.close();
  }
}
