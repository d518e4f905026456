import { randomUUID } from "node:crypto";
import type { JetStreamClient } from "@nats-io/jetstream";
import { RunRerunContract } from "../../schemas/contracts.ts";
import { PolicyAction } from "../../schemas/policy.ts";
import type { RunSubmission } from "../../schemas/run.ts";
import { Subjects } from "../../schemas/subjects.ts";
import { type Logger, publishSubmission, type Service, serve } from "../kit/index.ts";
import { planRerun, type RerunPlan } from "./rerun-plan.ts";
import { accessRun, type RunAccessOptions } from "./run-access.ts";
import type { RunStore } from "./run-store.ts";

export interface RunRerunOptions extends RunAccessOptions {
  js: JetStreamClient;
  log: Logger;
}

/** What a rerun submission starts from: the plan, and the run it reruns. */
export interface RerunStart {
  plan: RerunPlan;
  input: Record<string, unknown>;
  contextId: string;
}

/**
 * The rerun asked for by the caller of `authorization`, decided as `runs.rerun` on the run it
 * reruns and planned from its record: typed errors say why it cannot be.
 */
export async function rerunStart(
  options: RunAccessOptions,
  rerunOf: { runId: string; from?: string | undefined },
  authorization: string | undefined,
): Promise<RerunStart> {
  const access = await accessRun(options, rerunOf.runId, PolicyAction.RUNS_RERUN, authorization);
  const { record } = access.stored;
  return {
    plan: planRerun(record, rerunOf.from, new Date().toISOString()),
    input: record.input,
    contextId: record.contextId,
  };
}

/** Names the new run in the record of the run it reruns (`rerunAs`); once, however often asked. */
export async function linkRerun(runs: RunStore, runId: string, rerunAs: string): Promise<void> {
  await runs.change(runId, (record) =>
    record.rerunAs?.includes(rerunAs)
      ? undefined
      : { ...record, rerunAs: [...(record.rerunAs ?? []), rerunAs] },
  );
}

/**
 * `loom.v1.runs.rerun`: checks the rerun at once (policy, the run's state, the step to start from)
 * so the caller learns a refusal as a typed error, then submits the new run through
 * `loom.v1.runs.submit` with the caller's token, where it is admitted like any other run (and
 * `workflow.start` is decided for the caller). Replies with the new run's id.
 */
export function serveRunRerun(options: RunRerunOptions): Service {
  return serve(options.nc, {
    subject: Subjects.RUNS_RERUN,
    queue: "orchestrator-rerun",
    contract: RunRerunContract,
    log: options.log,
    handle: async ({ runId, from }, context) => {
      const start = await rerunStart(options, { runId, from }, context.authorization);
      const rerunOf = start.plan.rerunOf;
      const submission: RunSubmission = {
        runId: randomUUID(),
        workflow: start.plan.definition.id,
        input: {},
        rerunOf: { runId, from: rerunOf.from },
      };
      await publishSubmission(options.js, submission, context.authorization);
      return { runId: submission.runId, rerunOf };
    },
  });
}
