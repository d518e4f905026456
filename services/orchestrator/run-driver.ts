import { setTimeout as sleep } from "node:timers/promises";
import type { Context } from "@opentelemetry/api";
import { createActor } from "xstate";
import { TaskState } from "../../schemas/a2a.ts";
import type { RunRecord } from "../../schemas/run.ts";
import type { Workflow } from "../../schemas/workflow.ts";
import { type Logger, SpanKind, toWireError, withSpan } from "../kit/index.ts";
import { type ExpressionScope, renderValue } from "./expressions.ts";
import { type Effect, nextEffect, retryDelayMs, taskStateOf } from "./next-effect.ts";
import type { RunEvents } from "./run-events.ts";
import { compileWorkflow, FinalState, type RunContext, type RunMachineEvent } from "./run-machine.ts";
import { RunOwnershipLostError, type RunStore, type StoredRun } from "./run-store.ts";
import { runCallStep, type StepRunnerOptions } from "./step-runner.ts";

/** Pause before driving a run again after an unexpected failure (a broker restart, say). */
const RESUME_DELAY_MS = 1_000;

export interface RunDriverOptions extends StepRunnerOptions {
  runs: RunStore;
  events: RunEvents;
  log: Logger;
}

/** The persisted snapshot a new run starts from. */
export function initialSnapshot(workflow: Workflow, input: Record<string, unknown>): unknown {
  const actor = createActor(compileWorkflow(workflow), { input: { input } }).start();
  const snapshot = actor.getPersistedSnapshot();
  actor.stop();
  return snapshot;
}

/**
 * Drives runs to their end: perform the effect the current state stands for, feed its outcome to
 * the machine, persist the new snapshot with compare-and-set, publish the status, repeat.
 */
export class RunDriver {
  readonly #options: RunDriverOptions;
  readonly #active = new Map<string, Promise<void>>();
  #stopping = false;

  constructor(options: RunDriverOptions) {
    this.#options = options;
  }

  get activeRuns(): number {
    return this.#active.size;
  }

  /** Starts driving a stored run in the background, unless this process already drives it. */
  drive(stored: StoredRun, traceParent: Context | undefined): void {
    const { runId } = stored.record;
    if (this.#active.has(runId) || this.#stopping) return;
    const driving = withSpan(
      `run ${stored.record.workflowId}`,
      {
        kind: SpanKind.INTERNAL,
        attributes: { "loom.run.id": runId },
        ...(traceParent ? { parent: traceParent } : {}),
      },
      () => this.#driveUntilSettled(stored),
    ).finally(() => this.#active.delete(runId));
    this.#active.set(runId, driving);
  }

  /** Stops starting new steps and waits up to `timeoutMs` for runs to reach a checkpoint. */
  async stop(timeoutMs: number): Promise<void> {
    this.#stopping = true;
    await Promise.race([Promise.allSettled(this.#active.values()), sleep(timeoutMs)]);
  }

  async #driveUntilSettled(initial: StoredRun): Promise<void> {
    let stored = initial;
    const log = this.#options.log.child({ run_id: stored.record.runId });
    for (;;) {
      try {
        await this.#driveFrom(stored, log);
        return;
      } catch (error) {
        if (error instanceof RunOwnershipLostError) {
          log.warn({ err: error }, "run taken over by another orchestrator");
          return;
        }
        log.error({ err: error }, "driving the run failed; resuming from its last checkpoint");
        await sleep(RESUME_DELAY_MS);
        if (this.#stopping) return;
        const reloaded = await this.#options.runs.get(stored.record.runId).catch(() => undefined);
        if (reloaded !== undefined) stored = reloaded;
      }
    }
  }

  async #driveFrom(start: StoredRun, log: Logger): Promise<void> {
    let stored = start;
    const { definition } = stored.record;
    if (definition === undefined) return;
    const actor = createActor(compileWorkflow(definition), {
      // The snapshot was produced by this same definition, which the record pins.
      snapshot: stored.record.snapshot as never,
      input: { input: stored.record.input },
    }).start();
    try {
      for (;;) {
        const effect = nextEffect(definition, actor.getSnapshot());
        if (effect.kind === "finished") {
          await this.#announceEnd(stored.record, effect.state);
          log.info({ state: effect.state }, "run finished");
          return;
        }
        if (this.#stopping) return;
        const event = await this.#perform(stored.record, effect, actor.getSnapshot().context);
        actor.send(event);
        const snapshot = actor.getSnapshot();
        const next = nextEffect(definition, snapshot);
        stored = await this.#options.runs.update(stored, {
          ...stored.record,
          state: taskStateOf(next),
          snapshot: actor.getPersistedSnapshot(),
          ...(snapshot.context.output === undefined ? {} : { output: snapshot.context.output }),
          ...(snapshot.context.error === undefined ? {} : { error: snapshot.context.error }),
          updatedAt: new Date().toISOString(),
        });
      }
    } finally {
      actor.stop();
    }
  }

  async #perform(
    record: RunRecord,
    effect: Exclude<Effect, { kind: "finished" }>,
    context: RunContext,
  ): Promise<RunMachineEvent> {
    const scope: ExpressionScope = { input: context.input, steps: context.steps };
    if (effect.kind === "output") {
      const { definition } = record;
      try {
        const lastStep = definition?.steps.at(-1);
        const output =
          definition?.output === undefined
            ? lastStep === undefined
              ? null
              : context.steps[lastStep.id]
            : await renderValue(definition.output, scope, "output");
        return { type: "OUTPUT.READY", output: output ?? null };
      } catch (error) {
        return { type: "OUTPUT.FAILED", error: toWireError(error) };
      }
    }
    const { step, attempt } = effect;
    if (attempt > 1) await sleep(retryDelayMs(step, attempt));
    await this.#options.events.status(
      record,
      TaskState.WORKING,
      `step ${step.id}: calling ${step.call}${attempt > 1 ? ` (attempt ${attempt})` : ""}`,
      `step:${step.id}:${attempt}`,
      { stepId: step.id, call: step.call, attempt },
    );
    return runCallStep(this.#options, {
      runId: record.runId,
      contextId: record.contextId,
      authorization: record.authorization,
      step,
      attempt,
      scope,
    });
  }

  async #announceEnd(record: RunRecord, state: FinalState): Promise<void> {
    const { events } = this.#options;
    if (state === FinalState.COMPLETED) {
      await events.artifact(
        record,
        {
          artifactId: `${record.runId}-output`,
          name: "output",
          parts: [
            record.output === undefined || record.output === null
              ? { text: "" }
              : { data: record.output, mediaType: "application/json" },
          ],
        },
        "output",
      );
      await events.status(record, TaskState.COMPLETED, "run completed", "final");
      return;
    }
    const error = record.error;
    const taskState = state === FinalState.REJECTED ? TaskState.REJECTED : TaskState.FAILED;
    await events.status(
      record,
      taskState,
      error?.message ?? `run ${state}`,
      "final",
      error === undefined ? {} : { error },
    );
  }
}
