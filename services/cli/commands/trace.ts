import { jetstream } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { trace } from "@opentelemetry/api";
import { RunGetContract } from "../../../schemas/contracts.ts";
import { ErrorCode } from "../../../schemas/errors.ts";
import { Subjects } from "../../../schemas/subjects.ts";
import { contextFromFields, LoomError, readSpans } from "../../kit/index.ts";
import { connectCli, requestAs } from "../connection.ts";
import { ExitCode } from "../exit-codes.ts";
import { drawWaterfall } from "../waterfall.ts";

export interface TraceOptions {
  nats: string;
  token: string | undefined;
  json: boolean;
  /** Jaeger's UI base URL, to print the link that opens the trace. */
  jaegerUi: string;
}

/**
 * `loom runs trace <runId>`: the run's spans as a waterfall. The trace id comes from the trace
 * context on the run's events; the spans from `LOOM_SPANS`, where every service publishes its
 * finished spans (a few seconds after they end, at each export).
 */
export async function runsTraceCommand(runId: string, options: TraceOptions): Promise<ExitCode> {
  const nc = await connectCli(options.nats);
  try {
    const traceId = await runTraceId(nc, runId, options.token);
    const spans = await readSpans(jetstream(nc), traceId);
    const jaeger = `${options.jaegerUi.replace(/\/$/, "")}/trace/${traceId}`;
    if (options.json) {
      console.log(JSON.stringify({ runId, traceId, jaeger, spans }));
      return ExitCode.OK;
    }
    console.log(`run    ${runId}`);
    console.log(`trace  ${traceId}`);
    console.log(`jaeger ${jaeger}`);
    if (spans.length === 0) {
      console.log(
        "\nno spans in LOOM_SPANS for this trace yet (services publish them a few seconds after they end)",
      );
      return ExitCode.OK;
    }
    console.log(`\n${drawWaterfall(spans)}`);
    return ExitCode.OK;
  } finally {
    await nc.close();
  }
}

/**
 * The run's trace, from the trace context its record keeps, read through the orchestrators'
 * authorised API (the caller must be allowed to read the run).
 */
async function runTraceId(nc: NatsConnection, runId: string, token: string | undefined): Promise<string> {
  const run = await requestAs(nc, Subjects.RUNS_GET, RunGetContract, { runId }, token);
  const traceId = trace.getSpanContext(contextFromFields(run.traceContext))?.traceId;
  if (traceId === undefined) {
    throw new LoomError(ErrorCode.RUN_NOT_FOUND, `run ${runId} carries no trace context`);
  }
  return traceId;
}
