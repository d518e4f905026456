import { setTimeout as sleep } from "node:timers/promises";
import { TaskState } from "../../schemas/a2a.ts";
import { ErrorCode } from "../../schemas/errors.ts";
import { PolicyAction } from "../../schemas/policy.ts";
import type { RunRecord } from "../../schemas/run.ts";
import type { ElicitationRequest } from "../../schemas/sampling.ts";
import { ElicitAnswerSchema } from "../../schemas/sampling.ts";
import type { Workflow } from "../../schemas/workflow.ts";
import {
  authorize,
  encodePayload,
  inContext,
  type Logger,
  LoomError,
  policyMasks,
  type RunSpan,
  startRunSpan,
  toWireError,
} from "../kit/index.ts";
import type { PausableDeadline } from "../kit/pausable-deadline.ts";
import { mayWriteContext } from "./context-admission.ts";
import type { ContextMemoryStore } from "./context-memory.ts";
import {
  awaitedElicitations,
  type Effect,
  pendingEffects,
  type RunSnapshotView,
  retryDelayMs,
  taskStateOf,
} from "./demands.ts";
import { buildOutput, decideChoice, requestApproval } from "./effect-evaluation.ts";
import { type ExpressionLimits, type ExpressionScope, readsMemory } from "./expressions.ts";
import { LeaseSupervisor } from "./lease-supervisor.ts";
import type { ResultStore } from "./result-store.ts";
import { maskedFor } from "./run-access.ts";
import { type Announcement, announcementOf, runEnded, stepStarted } from "./run-announcements.ts";
import type { RunEvents } from "./run-events.ts";
import type { FinalState, RunMachineEvent } from "./run-machine.ts";
import { restoreRun } from "./run-restore.ts";
import { RunOwnershipLostError, type RunStore, type StoredRun } from "./run-store.ts";
import { RunWriter } from "./run-writer.ts";
import { runWorkStep, type StepRunnerOptions } from "./step-runner.ts";
import { activeStepIds, advanceTimeline } from "./step-timeline.ts";

export interface ExecutionOptions extends StepRunnerOptions {
  runs: RunStore;
  events: RunEvents;
  log: Logger;
  /** This replica's name, written into the records of the runs it drives. */
  owner: string;
  /** How long a replica's claim on a run lasts without renewal. */
  leaseMs: number;
  memory: ContextMemoryStore;
  results: ResultStore;
  expressionLimits: ExpressionLimits;
}

/** Outcomes of this replica's own effects, whose writes the run does not wait for. */
const PIPELINED_EVENTS: ReadonlySet<RunMachineEvent["type"]> = new Set([
  "STEP.SUCCEEDED",
  "STEP.FAILED",
  "CHOICE.DECIDED",
  "OUTPUT.READY",
  "OUTPUT.FAILED",
]);

/**
 * Drives one run this replica owns: performs the effects its states ask for (several at once in
 * a `parallel`), feeds each outcome to the machine one at a time, and after every transition
 * stores the snapshot with compare-and-set before announcing it. It ends when the run ends, when
 * the run only waits for input (ownership is released), or when another replica took the run.
 */
export class RunExecution {
  readonly runId: string;
  readonly #options: ExecutionOptions;
  readonly #workflow: Workflow;
  readonly #actor;
  readonly #inFlight = new Map<string, AbortController>();
  /** The reply deadline of each step's task in flight, stopped while its server's question is open. */
  readonly #deadlines = new Map<string, PausableDeadline>();
  readonly #log: Logger;
  /** The run's record as this replica last made it; the writer stores it behind the run. */
  #record: RunRecord;
  readonly #writer: RunWriter;
  #queue: Promise<unknown> = Promise.resolve();
  #stopped = false;
  #clocks: LeaseSupervisor | undefined;
  readonly #ended: Promise<void>;
  #memory: Promise<unknown[]> | undefined;
  /** Whether an outcome is held back to be written with the task that goes out next. */
  #unwritten = false;
  /** The steps the run was at when last stored, for its timeline. */
  #activeSteps: Set<string>;
  #end: () => void = () => {};
  /** This replica's stretch of the run's trace; the spans of the steps it starts go under it. */
  readonly #span: RunSpan;

  constructor(options: ExecutionOptions, stored: StoredRun) {
    const { definition } = stored.record;
    if (definition === undefined) throw new Error(`run ${stored.record.runId} has no definition to drive`);
    this.runId = stored.record.runId;
    this.#options = options;
    this.#workflow = definition;
    this.#record = stored.record;
    this.#writer = new RunWriter(options.runs, stored, (error) => this.#fail(error));
    this.#log = options.log.child({ run_id: this.runId });
    this.#actor = restoreRun(definition, stored.record);
    this.#activeSteps = activeStepIds(this.#actor.getSnapshot());
    this.#ended = new Promise((resolve) => {
      this.#end = resolve;
    });
    this.#span = startRunSpan(
      `run ${definition.id}`,
      { "loom.run.id": this.runId, "loom.workflow.id": definition.id },
      stored.record.traceContext,
    );
  }

  /** Resolves once this replica stops driving the run, for whatever reason. */
  get ended(): Promise<void> {
    return this.#ended;
  }

  /**
   * Starts driving: with `first`, that event is applied before anything else (an answer to a run
   * that only waited), and the result is the run's state after it.
   */
  start(first?: RunMachineEvent): Promise<TaskState> {
    this.#clocks = new LeaseSupervisor({
      leaseMs: this.#options.leaseMs,
      deadlineAt: this.#record.deadlineAt,
      renew: () => void this.#enqueue(() => this.#renewLease()),
      expire: () => void this.send({ type: "RUN.EXPIRED" }),
    });
    if (first !== undefined) return this.send(first);
    return this.#enqueue(async () => {
      await this.#schedule();
      return this.#record.state;
    });
  }

  /**
   * An MCP server's question during the tool call of `request.stepId` (task `request.taskId`):
   * recorded in the run, which goes input-required until someone answers. The answer goes to
   * `reply`, where the worker waits. Refused unless that exact dispatch is in flight.
   */
  elicit(request: ElicitationRequest, reply: string): Promise<TaskState> {
    return this.#enqueue(async () => {
      const snapshot = this.#actor.getSnapshot();
      const attempt = snapshot.context.attempts[request.stepId];
      const inFlight = this.#inFlight.has(`${request.stepId}#${attempt}`);
      if (!inFlight || request.taskId !== `${this.runId}:${request.stepId}:${attempt}`) {
        throw new LoomError(
          ErrorCode.RUN_NOT_WAITING,
          `run ${this.runId} has no tool call ${request.taskId} in flight to ask for`,
        );
      }
      return this.#apply({
        type: "STEP.ELICIT",
        stepId: request.stepId,
        elicitation: {
          server: request.server,
          message: request.message,
          requestedSchema: request.requestedSchema,
          attempt: attempt ?? 1,
          reply,
        },
      });
    });
  }

  /** Applies an event (an outcome, an approval, a cancel) and resolves with the run's state after it. */
  send(event: RunMachineEvent): Promise<TaskState> {
    return this.#enqueue(() => this.#apply(event));
  }

  /** Stops driving without writing: abandons in-flight effects (their agents are told to cancel). */
  stop(): void {
    if (this.#stopped) return;
    this.#stopped = true;
    this.#clocks?.stop();
    for (const controller of this.#inFlight.values()) controller.abort();
    this.#inFlight.clear();
    this.#actor.stop();
    this.#span.end();
    this.#end();
  }

  #enqueue<T>(work: () => Promise<T>): Promise<T> {
    const next = this.#queue.then(async () => {
      if (this.#stopped) return this.#record.state as T;
      try {
        return await work();
      } catch (error) {
        this.#fail(error);
        return this.#record.state as T;
      }
    });
    this.#queue = next.catch(() => undefined);
    return next;
  }

  #fail(error: unknown): void {
    if (this.#stopped) return;
    if (error instanceof RunOwnershipLostError) {
      this.#log.warn("another replica took the run over; this one stops driving it");
    } else {
      this.#log.error({ err: error }, "driving the run failed; another replica will take it over");
    }
    this.stop();
  }

  async #apply(event: RunMachineEvent): Promise<TaskState> {
    // A transition always makes a new snapshot; an event no transition takes leaves this one.
    const before = this.#actor.getSnapshot();
    // Only a question or its answer cares whether the step already waits for one.
    const asking =
      (event.type === "STEP.ELICIT" || event.type === "STEP.ELICIT_ANSWERED") &&
      awaitedElicitations(this.#actor.getSnapshot()).includes(event.stepId)
        ? this.#actor.getSnapshot().context.elicitations?.[event.stepId]
        : undefined;
    this.#actor.send(event);
    if (this.#actor.getSnapshot() === before) {
      this.#log.debug({ event: event.type }, "event changed nothing (late or not for this state)");
      return this.#record.state;
    }
    // A step's outcome is stored behind the run: the next step may go out before the write is
    // acked, since a re-sent step gets its stored outcome from the worker's step ledger. Anything
    // announced, or answered to a caller, waits for its write.
    if (!PIPELINED_EVENTS.has(event.type)) await this.#persist();
    else this.#persistBehind();
    const announcement = announcementOf(event, this.#workflow, this.#record);
    if (announcement !== undefined) await this.#announce(announcement);
    // A question asked again (the step taken over) replaces the open one; the clock stays stopped.
    if (event.type === "STEP.ELICIT" && asking === undefined) this.#deadlines.get(event.stepId)?.pause();
    if (event.type === "STEP.ELICIT_ANSWERED" && asking !== undefined) {
      // Stored first, then told: the worker's server goes on only with an answer the run keeps.
      this.#options.nc.publish(
        asking.reply,
        encodePayload(ElicitAnswerSchema, event.answer, "elicitation answer"),
      );
      this.#deadlines.get(event.stepId)?.resume();
    }
    await this.#schedule();
    return this.#record.state;
  }

  /**
   * Stores an outcome behind the run. An outcome that only leads to work done in this process (a
   * choice, the output) is stored with that work's outcome: a restore from the record before it
   * does that work again, to the same result. One that leads to a task is written as that task goes
   * out (`#writeBehind` from `onSend`), so both leave in one socket write; at the latest on the
   * event loop's next turn (a task that waits for a retry's delay, say).
   */
  #persistBehind(): void {
    const snapshot = this.#actor.getSnapshot();
    const effects = snapshot.status === "done" ? [] : pendingEffects(this.#workflow, snapshot);
    if (effects.length > 0 && effects.every((effect) => effect.kind !== "work")) return;
    if (!effects.some((effect) => effect.kind === "work")) {
      void this.#persist();
      return;
    }
    if (this.#unwritten) return;
    this.#unwritten = true;
    setImmediate(() => this.#writeBehind());
  }

  /** Hands the writer the outcome `#persistBehind` held back, if it still is. */
  #writeBehind(): void {
    if (this.#unwritten && !this.#stopped) void this.#persist();
  }

  #persist(): Promise<void> {
    this.#unwritten = false;
    const snapshot = this.#actor.getSnapshot();
    const pending = pendingEffects(this.#workflow, snapshot).map((effect) => effect.key);
    const driving = snapshot.status !== "done" && pending.length > 0;
    const { owner: _owner, leaseUntil: _leaseUntil, ...rest } = this.#record;
    const now = new Date().toISOString();
    const activeSteps = activeStepIds(snapshot);
    const record: RunRecord = {
      ...rest,
      timeline: advanceTimeline(rest.timeline ?? {}, this.#activeSteps, activeSteps, now),
      state: taskStateOf(this.#workflow, snapshot),
      snapshot: this.#actor.getPersistedSnapshot(),
      pending,
      ...(snapshot.context.output === undefined ? {} : { output: snapshot.context.output }),
      ...(snapshot.context.error === undefined ? {} : { error: snapshot.context.error }),
      ...(driving ? { owner: this.#options.owner, leaseUntil: this.#leaseUntil() } : {}),
      updatedAt: now,
    };
    if (snapshot.context.error === undefined) delete record.error;
    this.#record = record;
    this.#activeSteps = activeSteps;
    return this.#writer.write(record);
  }

  async #renewLease(): Promise<void> {
    if (this.#record.owner !== this.#options.owner) return;
    this.#record = { ...this.#record, leaseUntil: this.#leaseUntil() };
    await this.#writer.write(this.#record);
  }

  #leaseUntil(): string {
    return new Date(Date.now() + this.#options.leaseMs).toISOString();
  }

  /** Starts what the current states ask for, abandons what they no longer ask for, ends when done. */
  async #schedule(): Promise<void> {
    const snapshot = this.#actor.getSnapshot();
    if (snapshot.status === "done") {
      await this.#announceEnd(snapshot.value as FinalState);
      this.stop();
      return;
    }
    const effects = pendingEffects(this.#workflow, snapshot);
    const wanted = new Set(effects.map((effect) => effect.key));
    for (const [key, controller] of this.#inFlight) {
      if (!wanted.has(key)) {
        controller.abort();
        this.#inFlight.delete(key);
      }
    }
    for (const effect of effects) {
      if (!this.#inFlight.has(effect.key))
        inContext(this.#span.context, () => this.#launch(effect, snapshot));
    }
    if (effects.length === 0) {
      // Whoever answers finds the run waiting in its record.
      this.#writeBehind();
      await this.#writer.flushed();
      this.#log.info({ state: this.#record.state }, "run waits for input; ownership released");
      this.stop();
    }
  }

  #launch(effect: Effect, snapshot: RunSnapshotView): void {
    const controller = new AbortController();
    this.#inFlight.set(effect.key, controller);
    const scope: ExpressionScope = {
      input: snapshot.context.input,
      steps: snapshot.context.steps,
      limits: this.#options.expressionLimits,
    };
    const memory = readsMemory(this.#workflow) ? this.#contextMemory() : [];
    void Promise.all([memory, this.#options.results.expand(scope.steps)])
      .then(([memory, steps]) =>
        this.#perform(effect, { ...scope, steps, memory }, snapshot, controller.signal),
      )
      .then(async (event) => {
        if (event.type !== "STEP.SUCCEEDED" || effect.kind !== "work") return event;
        const key = `${this.runId}.${event.stepId}.${effect.attempt}`;
        const { steps } = this.#actor.getSnapshot().context;
        return { ...event, result: await this.#options.results.shrink(key, event.result, steps) };
      })
      .catch((error: unknown): RunMachineEvent | undefined => {
        if (controller.signal.aborted) return undefined;
        this.#log.error({ err: error, effect: effect.key }, "effect failed unexpectedly");
        // A choice or approval prompt that cannot be evaluated fails its step too, else it hangs.
        return effect.kind === "output"
          ? { type: "OUTPUT.FAILED", error: toWireError(error) }
          : { type: "STEP.FAILED", stepId: effect.step.id, error: toWireError(error) };
      })
      .then((event) => {
        if (event === undefined) return;
        // The effect stays in flight until its outcome is applied: an outcome applied before it
        // (another branch of a parallel) reschedules from a snapshot that still asks for this one.
        void this.#enqueue(async () => {
          if (controller.signal.aborted || this.#inFlight.get(effect.key) !== controller)
            return this.#record.state;
          this.#inFlight.delete(effect.key);
          return this.#apply(event);
        });
      });
  }

  /**
   * Earlier runs of this run's context, read once per execution. A context someone else started is
   * theirs: its memory reaches this run only when policy lets this run's starter read it
   * (`memory.read`, decided with the run's token on the orchestrator's own subject), masked as policy asks.
   */
  #contextMemory(): Promise<unknown[]> {
    const { contextId, runId, startedBy } = this.#record;
    this.#memory ??= this.#options.memory.read(contextId).then(async (memory) => {
      if (memory === undefined) return [];
      const entries = memory.entries.filter((entry) => entry.runId !== runId);
      if (memory.owner === undefined || memory.owner === startedBy) return entries;
      const decision = await authorize(
        this.#options.nc,
        {
          action: PolicyAction.MEMORY_READ,
          resource: { contextId, startedBy: memory.owner },
          runId,
          runWorkflow: { id: this.#workflow.id, version: this.#workflow.version },
        },
        {
          authorization: await this.#options.runTokens.authorization(runId),
          timeoutMs: this.#options.policyTimeoutMs,
          what: `reading memory of ${contextId}`,
          channel: "run",
        },
      );
      return maskedFor(entries, decision.obligations);
    });
    return this.#memory;
  }

  async #perform(
    effect: Effect,
    scope: ExpressionScope,
    snapshot: RunSnapshotView,
    signal: AbortSignal,
  ): Promise<RunMachineEvent> {
    const record = this.#record;
    switch (effect.kind) {
      case "work": {
        const { step, attempt } = effect;
        const tries = snapshot.context.tries[step.id] ?? 1;
        if (tries > 1) await sleep(retryDelayMs(step, tries), undefined, { signal });
        return runWorkStep(this.#options, {
          runId: record.runId,
          contextId: record.contextId,
          workflow: { id: this.#workflow.id, version: this.#workflow.version },
          step,
          attempt,
          scope,
          signal,
          followUp: effect.followUp,
          onDeadline: (deadline) => this.#deadlines.set(step.id, deadline),
          // Told, not awaited: watchers learn the step started; the step does not wait for the
          // PubAck. Events of one connection reach the stream in order, so its outcome comes after.
          onSend: () => {
            this.#writeBehind();
            this.#tell(stepStarted(step, attempt, tries));
          },
          onProgress: (text, progress) =>
            this.#options.events.status(
              record,
              TaskState.WORKING,
              text,
              // MCP progress only grows, so its value tells one report of a step's attempt from another.
              `progress:${step.id}:${attempt}:${progress?.progress ?? Date.now()}`,
              {
                stepId: step.id,
                ...(progress === undefined ? {} : { progress }),
              },
            ),
        });
      }
      case "choice":
        return decideChoice(effect.step, scope);
      case "approval-request":
        return requestApproval(
          effect.step,
          scope,
          await policyMasks(this.#options.nc, this.#options.policyTimeoutMs),
        );
      case "output":
        return buildOutput(this.#workflow, scope, this.#options.expressionLimits.maxResultBytes);
    }
  }

  /** Tells the run's watchers, without waiting for the PubAck; a failure is logged. */
  #tell(announcement: Announcement): void {
    void this.#announce(announcement).catch((error: unknown) =>
      this.#log.warn({ err: error, event: announcement.dedupeKey }, "run event not told"),
    );
  }

  #announce(announcement: Announcement): Promise<void> {
    const { state, text, dedupeKey, metadata } = announcement;
    return this.#options.events.status(this.#record, state, text, dedupeKey, metadata);
  }

  /**
   * The output artifact goes out beside the record's last write; the final status only once both
   * are acked, so a run is reported ended only once its record says so, and after its artifact.
   */
  async #announceEnd(state: FinalState): Promise<void> {
    const record = this.#record;
    const { artifact, status } = runEnded(state, record);
    await Promise.all([
      this.#writer.flushed(),
      artifact === undefined ? undefined : this.#options.events.artifact(record, artifact, "output"),
    ]);
    await this.#announce(status);
    await this.#options.memory.remember(record, async (owner) =>
      mayWriteContext(
        this.#options,
        {
          contextId: record.contextId,
          runId: record.runId,
          workflow: this.#workflow,
          authorization: await this.#options.runTokens.authorization(record.runId),
        },
        owner,
      ),
    );
    this.#log.info({ state }, "run finished");
  }
}
