import type { JetStreamClient } from "@nats-io/jetstream";
import type { NatsConnection, Subscription } from "@nats-io/transport-node";
import { z } from "zod";
import { type Message, type Task, TaskState } from "../../schemas/a2a.ts";
import { AgentTaskContract, RunCancelContract } from "../../schemas/contracts.ts";
import { ErrorCode } from "../../schemas/errors.ts";
import { RunSubmissionSchema } from "../../schemas/run.ts";
import {
  agentCancelSubject,
  agentTasksSubject,
  runDelegatedCancelSubject,
  Subjects,
} from "../../schemas/subjects.ts";
import {
  describeIssues,
  followRun,
  type Logger,
  LoomError,
  listen,
  publishSubmission,
  request,
  type Service,
  serve,
  watchRun,
} from "../kit/index.ts";
import { assertInputWithin, type RunLimits } from "./limits.ts";

const CANCEL_TIMEOUT_MS = 10_000;
/** A task id that names a run once its other characters are replaced: at least one letter or digit. */
const TaskIdSchema = z
  .string()
  .regex(/[A-Za-z0-9]/, "a task id needs a letter or digit")
  .max(1_024);
const CancelSchema = z.object({ taskId: TaskIdSchema });

/** The run a task starts: derived from the task id, so a re-sent task joins the run it started. */
function childRunId(taskId: string): string {
  return taskId.replace(/[^A-Za-z0-9_-]/g, "_").slice(0, 128);
}

/** The agent name a workflow answers to on the bus: `wf-<id>`. */
export function workflowAgentName(workflowId: string): string {
  return `wf-${workflowId}`;
}

/**
 * Every registered workflow is also an agent on the bus (`loom.v1.agents.wf-<id>.tasks`), so a
 * `delegate` step can hand it work. A task becomes a child run of the workflow, submitted with the
 * delegating run's token, and the reply is that run's end: its output
 * artifact, or its error. The run id derives from the task id, so a re-sent task joins the run
 * it started instead of starting another.
 */
export class WorkflowAgents {
  readonly #nc: NatsConnection;
  readonly #js: JetStreamClient;
  readonly #log: Logger;
  readonly #services = new Map<string, Service>();
  readonly #cancels: Subscription[] = [];

  readonly #limits: RunLimits;

  constructor(nc: NatsConnection, js: JetStreamClient, limits: RunLimits, log: Logger) {
    this.#nc = nc;
    this.#js = js;
    this.#limits = limits;
    this.#log = log;
  }

  expose(workflowId: string): void {
    if (this.#services.has(workflowId)) return;
    const agent = workflowAgentName(workflowId);
    this.#services.set(
      workflowId,
      serve(this.#nc, {
        subject: agentTasksSubject(agent),
        queue: agent,
        contract: AgentTaskContract,
        log: this.#log,
        handle: (message, context) => this.#run(workflowId, message, context.authorization),
      }),
    );
    // A canceled delegate step cancels the run it started here.
    this.#cancels.push(
      listen(this.#nc, {
        subject: agentCancelSubject(agent),
        schema: CancelSchema,
        what: "task cancel",
        log: this.#log,
        handle: (cancel) => {
          const runId = childRunId(cancel.taskId);
          // Only an orchestrator may send this cancel or the one it asks for: the child run is
          // canceled as its own decision, with its own run token.
          void request(
            this.#nc,
            runDelegatedCancelSubject(runId),
            RunCancelContract,
            { reason: "the delegating step was canceled" },
            { timeoutMs: CANCEL_TIMEOUT_MS },
          ).catch((error: unknown) =>
            this.#log.warn({ err: error, run_id: runId }, "could not cancel a delegated run"),
          );
        },
      }),
    );
  }

  async stop(): Promise<void> {
    for (const subscription of this.#cancels) subscription.unsubscribe();
    await Promise.all([...this.#services.values()].map((service) => service.stop()));
  }

  async #run(workflowId: string, message: Message, authorization: string | undefined): Promise<Task> {
    const taskId = TaskIdSchema.safeParse(message.taskId ?? message.messageId);
    if (!taskId.success) {
      throw new LoomError(
        ErrorCode.INVALID_MESSAGE,
        `task for ${workflowAgentName(workflowId)}: its taskId (or messageId) needs a letter or digit and at most 1024 characters`,
      );
    }
    const runId = childRunId(taskId.data);
    const data = message.parts.find((part) => "data" in part);
    const text = message.parts.find((part) => "text" in part);
    const input =
      data !== undefined &&
      "data" in data &&
      typeof data.data === "object" &&
      data.data !== null &&
      !Array.isArray(data.data)
        ? (data.data as Record<string, unknown>)
        : { text: text !== undefined && "text" in text ? text.text : "" };
    // Refused here, before a watch starts: a submission over max_payload could not even be sent.
    assertInputWithin(input, this.#limits);
    const submission = RunSubmissionSchema.safeParse({
      runId,
      workflow: workflowId,
      input,
      ...(message.contextId ? { contextId: message.contextId } : {}),
    });
    if (!submission.success) {
      throw new LoomError(
        ErrorCode.INVALID_MESSAGE,
        `task for ${workflowAgentName(workflowId)} cannot start a run: ${describeIssues(submission.error.issues)}`,
      );
    }
    const events = followRun(this.#js, runId, {
      onInvalid: (problem) => this.#log.warn({ run_id: runId, problem }, "unreadable run event"),
    });
    const ended = watchRun(runId, events, () => {});
    // The task came from a delegate step with its run's token: the child run is submitted where
    // only an orchestrator may publish, and decided with that token where only one may ask.
    await publishSubmission(this.#js, submission.data, authorization, Subjects.RUNS_DELEGATED);
    const result = await ended;
    if (result.state !== TaskState.COMPLETED) {
      const last = result.events.findLast((event) => "statusUpdate" in event);
      const error =
        last !== undefined && "statusUpdate" in last ? last.statusUpdate.metadata?.error : undefined;
      throw new LoomError(
        error?.code ?? ErrorCode.TOOL_ERROR,
        `delegated run ${runId} of ${workflowId} ended ${result.state}: ${error?.message ?? "no reason given"}`,
        {
          details: { runId, ...(error?.details ?? {}) },
        },
      );
    }
    return {
      id: runId,
      contextId: message.contextId ?? runId,
      status: { state: TaskState.COMPLETED, timestamp: new Date().toISOString() },
      artifacts: [
        {
          artifactId: `${runId}-output`,
          name: "output",
          parts: [
            result.output === undefined || result.output === null ? { text: "" } : { data: result.output },
          ],
        },
      ],
    };
  }
}
