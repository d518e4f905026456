import type { JetStreamClient } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { FeedbackContract } from "../../schemas/contracts.ts";
import { ErrorCode } from "../../schemas/errors.ts";
import { PolicyAction } from "../../schemas/policy.ts";
import { feedbackSubject, runIdOfSubject, Subjects } from "../../schemas/subjects.ts";
import { type FeedbackRecord, FeedbackRecordSchema, type ToolCallRecord } from "../../schemas/tool-calls.ts";
import { encodePayload, type Logger, LoomError, type Service, serve } from "../kit/index.ts";
import { readCallLog } from "./call-log.ts";
import { decideOnRun, findRun, runResource } from "./run-access.ts";
import type { RunStore, StoredRun } from "./run-store.ts";

export interface ToolFeedbackOptions {
  nc: NatsConnection;
  js: JetStreamClient;
  runs: RunStore;
  log: Logger;
  policyTimeoutMs: number;
}

/**
 * Serves `loom feedback <runId> <stepId> --ok|--bad`: policy must let the caller judge the run
 * (`runs.feedback`, which sees who started the run as `resource.started_by`; else RUN_NOT_FOUND, as
 * for a run that does not exist), and the step must have called a tool, resource or prompt. The verdict is appended to `LOOM_TOOL_CALLS`
 * with the server version of that call, so `loom tools stats` can set it against that version.
 */
export function serveToolFeedback(options: ToolFeedbackOptions): Service {
  return serve(options.nc, {
    subject: Subjects.RUN_FEEDBACK_ALL,
    queue: "orchestrator-feedback",
    contract: FeedbackContract,
    log: options.log,
    handle: async (body, context) => {
      const runId = runIdOfSubject(context.subject);
      const { stored, decision } = await decideOnRun(
        options,
        runId,
        await findRun(options.runs, runId),
        (record) => ({
          action: PolicyAction.RUNS_FEEDBACK,
          resource: runResource(record),
          runId,
          stepId: body.stepId,
        }),
        context.authorization,
      );
      const call = await lastCallOf(options, stored, runId, body.stepId);
      const record: FeedbackRecord = {
        type: "feedback",
        server: call.server,
        target: call.target,
        kind: call.kind,
        serverVersion: call.serverVersion,
        runId,
        stepId: body.stepId,
        verdict: body.verdict,
        ...(body.comment === undefined ? {} : { comment: body.comment }),
        by: decision.principal.id,
        timestamp: new Date().toISOString(),
      };
      await options.js.publish(
        feedbackSubject(runId),
        encodePayload(FeedbackRecordSchema, record, "feedback"),
      );
      options.log.info(
        { run_id: runId, step_id: body.stepId, verdict: body.verdict, tool: `${call.server}.${call.target}` },
        "feedback recorded",
      );
      const { type: _type, ...reply } = record;
      return reply;
    },
  });
}

/**
 * Slack around a run's lifetime when its execution records are looked for: the worker stores one
 * after its answer (so after the run's update, at times), and the broker's clock, which stamps
 * them, is not the orchestrator's.
 */
const EXECUTION_RECORD_MARGIN_MS = 60_000;

/**
 * The step's latest call (its last attempt), or STEP_NOT_FOUND naming the steps that made one.
 * Only the records stored while the run went on are read: from its creation to its last update.
 */
async function lastCallOf(
  options: ToolFeedbackOptions,
  stored: StoredRun,
  runId: string,
  stepId: string,
): Promise<ToolCallRecord> {
  const { createdAt, updatedAt } = stored.record;
  const calls = (
    await readCallLog(
      options.js,
      {
        runId,
        since: new Date(Date.parse(createdAt) - EXECUTION_RECORD_MARGIN_MS),
        until: new Date(Date.parse(updatedAt) + EXECUTION_RECORD_MARGIN_MS),
      },
      options.log,
    )
  ).filter((record): record is ToolCallRecord => record.type === "call");
  const call = calls.findLast((record) => record.stepId === stepId);
  if (call !== undefined) return call;
  const known = [...new Set(calls.flatMap((record) => (record.stepId === undefined ? [] : [record.stepId])))];
  throw new LoomError(
    ErrorCode.STEP_NOT_FOUND,
    known.length === 0
      ? `run ${runId} has no recorded tool calls`
      : `run ${runId} has no step ${stepId} that called a tool; steps that did: ${known.join(", ")}`,
  );
}
