import { randomUUID } from "node:crypto";
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { jetstream } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { parse as parseYaml } from "yaml";
import { z } from "zod";
import { shortStateName } from "../../../schemas/a2a.ts";
import { ErrorCode } from "../../../schemas/errors.ts";
import { type RunSubmission, RunSubmissionSchema } from "../../../schemas/run.ts";
import { Headers, Subjects } from "../../../schemas/subjects.ts";
import {
  encodePayload,
  LoomError,
  SpanKind,
  type Telemetry,
  tracedHeaders,
  withSpan,
} from "../../kit/index.ts";
import { pollRunEvents, watchRun } from "../../kit/run-watch.ts";
import { bearerOf, connectCli } from "../connection.ts";
import { ExitCode, exitCodeForState } from "../exit-codes.ts";
import { formatJson, statusLine } from "../render.ts";

/** How long `--watch` waits for the orchestrator to store a run it was just sent (it may be busy). */
const WAIT_FOR_RUN_MS = 60_000;

export interface SubmitOptions {
  nats: string;
  token: string | undefined;
  input: string | undefined;
  watch: boolean;
  json: boolean;
  context: string | undefined;
  /** The CLI's telemetry: its spans are flushed (and sent to `LOOM_SPANS`) before the command ends. */
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
  options.telemetry?.publishSpansTo(nc);
  const workflowName = typeof submission.workflow === "string" ? submission.workflow : submission.workflow.id;
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
        await withSpan(
          `send ${Subjects.RUNS_SUBMIT}`,
          {
            kind: SpanKind.PRODUCER,
            attributes: {
              "messaging.system": "nats",
              "messaging.destination.name": Subjects.RUNS_SUBMIT,
              "messaging.operation.type": "send",
              "messaging.message.id": submission.runId,
            },
          },
          () =>
            js.publish(
              Subjects.RUNS_SUBMIT,
              encodePayload(RunSubmissionSchema, submission, "run submission"),
              {
                msgID: submission.runId,
                headers: tracedHeaders({ [Headers.AUTHORIZATION]: bearerOf(options.token) }),
              },
            ),
        );
        if (!options.watch) {
          console.log(options.json ? JSON.stringify({ runId: submission.runId, traceId }) : submission.runId);
          return ExitCode.OK;
        }
        if (!options.json) console.log(`run ${submission.runId}\ntrace ${traceId}`);
        return await watchAndReport(nc, submission.runId, traceId, options);
      },
    );
  } finally {
    // Before the connection closes: the CLI's own spans go to LOOM_SPANS over it.
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

/** A path to a YAML/JSON file is sent inline; anything else is a registered workflow id. */
async function readWorkflowArg(arg: string): Promise<unknown> {
  const looksLikeFile = /\.(ya?ml|json)$/i.test(arg) || arg.includes("/");
  if (!looksLikeFile) return arg;
  if (!existsSync(arg)) throw new LoomError(ErrorCode.INVALID_INPUT, `no workflow file at ${arg}`);
  try {
    return parseYaml(await readFile(arg, "utf8"));
  } catch (cause) {
    throw new LoomError(ErrorCode.INVALID_WORKFLOW, `${arg} is not readable YAML or JSON: ${String(cause)}`, {
      cause,
    });
  }
}

/** `--input '{"a":1}'` or `--input @input.json`. */
export async function readInput(arg: string | undefined): Promise<Record<string, unknown>> {
  if (arg === undefined) return {};
  const text = arg.startsWith("@") ? await readFile(arg.slice(1), "utf8") : arg;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (cause) {
    throw new LoomError(ErrorCode.INVALID_INPUT, `--input is not valid JSON: ${String(cause)}`, { cause });
  }
  const parsed = z.record(z.string(), z.unknown()).safeParse(value);
  if (!parsed.success) throw new LoomError(ErrorCode.INVALID_INPUT, "--input must be a JSON object");
  return parsed.data;
}
