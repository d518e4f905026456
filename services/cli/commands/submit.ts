import { randomUUID } from "node:crypto";
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { resolve } from "node:path";
import { jetstream } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { z } from "zod";
import { shortStateName } from "../../../schemas/a2a.ts";
import { ErrorCode } from "../../../schemas/errors.ts";
import type { RunSubmission } from "../../../schemas/run.ts";
import type { Workflow } from "../../../schemas/workflow.ts";
import { LoomError, publishSubmission, SpanKind, type Telemetry, withSpan } from "../../kit/index.ts";
import { pollRunEvents, watchRun } from "../../kit/run-watch.ts";
import { readWorkflowDefinition } from "../../kit/workflow-definition.ts";
import { bearerOf, connectCli } from "../connection.ts";
import { ExitCode, exitCodeForState } from "../exit-codes.ts";
import { formatJson, statusLine } from "../render.ts";
import { isWorkflowFile } from "../workflow-file.ts";

/** How long `--watch` waits for the orchestrator to store a run it was just sent (it may be busy). */
const WAIT_FOR_RUN_MS = 60_000;

export interface SubmitOptions {
  nats: string;
  token: string | undefined;
  input: string | undefined;
  watch: boolean;
  json: boolean;
  context: string | undefined;
  /**
   * The CLI's telemetry: its spans are flushed to the configured exporter before the command ends.
   * They never go to `LOOM_SPANS`: only the services' NATS users may publish spans there.
   */
  telemetry?: Telemetry;
}

/** `loom submit <workflow-id|file>`: publishes a durable submission; with --watch, follows it to its end. */
export async function submitCommand(workflowArg: string, options: SubmitOptions): Promise<ExitCode> {
  const submission: RunSubmission = {
    runId: randomUUID(),
    workflow: await readWorkflowArg(workflowArg),
    input: await readInput(options.input),
    ...(options.context === undefined ? {} : { contextId: options.context }),
  } as RunSubmission;
  const nc = await connectCli(options.nats);
  const workflowName =
    typeof submission.workflow === "string" ? submission.workflow : String(submission.workflow.id);
  try {
    // The root of the run's trace: every service's spans for this run descend from it.
    return await withSpan(
      `loom submit ${workflowName}`,
      {
        kind: SpanKind.CLIENT,
        attributes: { "loom.run.id": submission.runId, "loom.workflow.id": workflowName },
      },
      async (span) => {
        const traceId = span.spanContext().traceId;
        const js = jetstream(nc);
        await publishSubmission(js, submission, bearerOf(options.token));
        if (!options.watch) {
          console.log(options.json ? JSON.stringify({ runId: submission.runId, traceId }) : submission.runId);
          return ExitCode.OK;
        }
        if (!options.json) console.log(`run ${submission.runId}\ntrace ${traceId}`);
        return await watchAndReport(nc, submission.runId, traceId, options);
      },
    );
  } finally {
    await options.telemetry?.flush();
    await nc.close();
  }
}

/**
 * Follows a submitted run to its end through the orchestrators' authorised watch API (the caller
 * started it, so policy lets it follow), printing status lines (or one JSON summary) and the output.
 */
async function watchAndReport(
  nc: NatsConnection,
  runId: string,
  traceId: string,
  options: SubmitOptions,
): Promise<ExitCode> {
  const events = pollRunEvents(nc, runId, {
    authorization: bearerOf(options.token),
    waitForRunMs: WAIT_FOR_RUN_MS,
  });
  const result = await watchRun(runId, events, (event) => {
    const line = statusLine(event);
    if (line !== undefined && !options.json) console.log(line);
  });
  const finalStatus = result.events.findLast((event) => "statusUpdate" in event);
  const error =
    finalStatus && "statusUpdate" in finalStatus ? finalStatus.statusUpdate.metadata?.error : undefined;
  if (options.json) {
    // MCP progress the steps reported, in order: what the bar lines show without --json.
    const progress = result.events.flatMap((event) => {
      const metadata = "statusUpdate" in event ? event.statusUpdate.metadata : undefined;
      return metadata?.progress === undefined ? [] : [{ stepId: metadata.stepId, ...metadata.progress }];
    });
    console.log(
      JSON.stringify({
        runId,
        traceId,
        state: shortStateName(result.state),
        ...(result.output === undefined ? {} : { output: result.output }),
        ...(error === undefined ? {} : { error }),
        ...(progress.length === 0 ? {} : { progress }),
      }),
    );
  } else if (result.output !== undefined) {
    console.log(`output:\n${formatJson(result.output)}`);
  }
  return exitCodeForState(result.state);
}

/** A path to a YAML/JSON file is checked and sent inline; anything else is a registered workflow id. */
function readWorkflowArg(arg: string): Promise<Workflow> | string {
  return isWorkflowFile(arg) ? readWorkflowDefinition(arg) : arg;
}

/** `--input '{"a":1}'` or `--input @input.json` (and likewise for `option`, such as `--data`). */
export async function readInput(
  arg: string | undefined,
  option = "--input",
): Promise<Record<string, unknown>> {
  if (arg === undefined) return {};
  const file = arg.startsWith("@") ? arg.slice(1) : undefined;
  if (file !== undefined && !existsSync(file)) {
    throw new LoomError(ErrorCode.INVALID_INPUT, `${option} ${arg}: there is no file ${resolve(file)}`);
  }
  const text = file === undefined ? arg : await readFile(file, "utf8");
  const source = file === undefined ? option : `${option} ${arg}`;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (cause) {
    throw new LoomError(ErrorCode.INVALID_INPUT, `${source} is not valid JSON: ${String(cause)}`, { cause });
  }
  const parsed = z.record(z.string(), z.unknown()).safeParse(value);
  if (!parsed.success) throw new LoomError(ErrorCode.INVALID_INPUT, `${source} must be a JSON object`);
  return parsed.data;
}
