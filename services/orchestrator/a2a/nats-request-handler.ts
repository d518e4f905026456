import { randomUUID } from "node:crypto";
import {
  type AgentCard,
  type CancelTaskRequest,
  type DeleteTaskPushNotificationConfigRequest,
  type GetTaskPushNotificationConfigRequest,
  type GetTaskRequest,
  type ListTaskPushNotificationConfigsRequest,
  type ListTaskPushNotificationConfigsResponse,
  type ListTasksRequest,
  type ListTasksResponse,
  Message as MessageCodec,
  TaskPushNotificationConfig as PushConfigCodec,
  type SendMessageRequest,
  StreamResponse as StreamCodec,
  type SubscribeToTaskRequest,
  Task as TaskCodec,
  type TaskPushNotificationConfig,
  taskStateToJSON,
} from "@a2a-js/sdk";
import {
  ExtendedAgentCardNotConfiguredError,
  RequestMalformedError,
  TaskNotCancelableError,
  TaskNotFoundError,
} from "@a2a-js/sdk/errors";
import type { A2ARequestHandler, ServerCallContext } from "@a2a-js/sdk/server";
import type { JetStreamClient, JetStreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { type Message, PushRegistrationSchema, TaskState, TERMINAL_STATES } from "../../../schemas/a2a.ts";
import { RunCancelContract, RunInputContract } from "../../../schemas/contracts.ts";
import { ErrorCode } from "../../../schemas/errors.ts";
import { type Obligations, PolicyAction } from "../../../schemas/policy.ts";
import { MAX_RUNS_PAGE } from "../../../schemas/run-read.ts";
import { Headers, RUN_ID_PATTERN, runCancelSubject, runInputSubject } from "../../../schemas/subjects.ts";
import {
  describeIssues,
  followRun,
  LoomError,
  lastEventSequence,
  publishSubmission,
  request,
} from "../../kit/index.ts";
import { NO_MASKS } from "../../kit/masking.ts";
import {
  accessRun,
  maskedEvent,
  maskedRecord,
  type RunAccess,
  type RunReadAction,
  readerObligations,
  runNotFound,
} from "../run-access.ts";
import { listRuns } from "../run-reads.ts";
import type { RunStore } from "../run-store.ts";
import { bearerOf } from "./bearer-user.ts";
import { runIdOfMessage } from "./idempotent-ids.ts";
import type { PushRegistry } from "./push-notifications.ts";
import { taskOfRun } from "./task-view.ts";

type SdkTask = ReturnType<typeof TaskCodec.fromJSON>;
type SdkStreamResponse = ReturnType<typeof StreamCodec.fromJSON>;

const CONTROL_TIMEOUT_MS = 15_000;
const DEFAULT_PAGE_SIZE = 50;
/** States in which a run waits for the client, so a blocking send returns. */
const interrupted = (state: TaskState) => TERMINAL_STATES.has(state) || state === TaskState.INPUT_REQUIRED;

export interface HandlerOptions {
  nc: NatsConnection;
  policyTimeoutMs: number;
  js: JetStreamClient;
  jsm: JetStreamManager;
  runs: RunStore;
  push: PushRegistry;
  card: () => AgentCard;
}

/**
 * The A2A operations over NATS: a message starts a run (or answers the one that waits), and every
 * read comes from `loom_runs` and the run's event stream, so any orchestrator replica answers for
 * any task and a restart loses none. Every read of a task (get, list, subscribe, webhooks) is
 * decided by acp-policy for the caller, and what it returns is masked for the caller.
 */
export class NatsA2ARequestHandler implements A2ARequestHandler {
  readonly #options: HandlerOptions;

  constructor(options: HandlerOptions) {
    this.#options = options;
  }

  async getAgentCard(): Promise<AgentCard> {
    return this.#options.card();
  }

  async getAuthenticatedExtendedAgentCard(): Promise<AgentCard> {
    throw new ExtendedAgentCardNotConfiguredError("Loom has no extended agent card");
  }

  async sendMessage(params: SendMessageRequest, context: ServerCallContext): Promise<SdkTask> {
    const accepted = await this.#accept(params, context);
    if (params.configuration?.returnImmediately === true) {
      // Return once the run exists, so the task id is at once good for GetTask and SubscribeToTask.
      const first = followRun(this.#options.js, accepted.runId, {
        stopAt: () => true,
        afterSequence: accepted.afterSequence,
      });
      for await (const _event of first) {
        // The first event of the run (or after the answer) is enough.
      }
    } else {
      const options = { stopAt: interrupted, afterSequence: accepted.afterSequence };
      for await (const _event of followRun(this.#options.js, accepted.runId, options)) {
        // Drained until the run ends or waits for input.
      }
    }
    return this.#taskOf(accepted.runId, context, accepted.contextId);
  }

  async *sendMessageStream(
    params: SendMessageRequest,
    context: ServerCallContext,
  ): AsyncGenerator<SdkStreamResponse> {
    const accepted = await this.#accept(params, context);
    const access = await this.#readAccess(accepted.runId, context, PolicyAction.RUNS_SUBSCRIBE);
    yield StreamCodec.fromJSON({
      task: TaskCodec.toJSON(await this.#taskOf(accepted.runId, context, accepted.contextId)),
    });
    // An answerer who may not follow the run gets the task's state, not its events.
    if (access === "denied") return;
    yield* this.#events(accepted.runId, context, access, accepted.afterSequence);
  }

  async getTask(params: GetTaskRequest, context: ServerCallContext): Promise<SdkTask> {
    const access = await this.#access(params.id, context, PolicyAction.RUNS_READ);
    return TaskCodec.fromJSON(taskOfRun(maskedRecord(access.stored.record, access.obligations)));
  }

  async listTasks(params: ListTasksRequest, context: ServerCallContext): Promise<ListTasksResponse> {
    const pageSize =
      params.pageSize && params.pageSize > 0 ? Math.min(params.pageSize, MAX_RUNS_PAGE) : DEFAULT_PAGE_SIZE;
    if (params.pageToken !== "" && !/^\d+$/.test(params.pageToken))
      throw new RequestMalformedError(`invalid page token "${params.pageToken}"`);
    const listed = await listRuns(
      this.#options,
      {
        limit: pageSize,
        ...(params.pageToken === "" ? {} : { cursor: params.pageToken }),
        ...(params.contextId === "" ? {} : { contextId: params.contextId }),
        ...(params.status === 0 ? {} : { state: taskStateToJSON(params.status) as TaskState }),
      },
      bearerOf(context),
    ).catch(a2aError);
    // Each run listed is read as GetTask reads it: decided and masked for the caller.
    const tasks = await Promise.all(
      listed.runs.map(async (run) => {
        const access = await this.#access(run.runId, context, PolicyAction.RUNS_READ);
        return TaskCodec.fromJSON(taskOfRun(maskedRecord(access.stored.record, access.obligations)));
      }),
    );
    return { tasks, nextPageToken: listed.nextCursor ?? "", pageSize, totalSize: listed.total };
  }

  async cancelTask(params: CancelTaskRequest, context: ServerCallContext): Promise<SdkTask> {
    // The run's cancel decides first (RUN_NOT_FOUND for a task the caller may not cancel, as for
    // one that does not exist), and only then says whether the task had already ended.
    if (!RUN_ID_PATTERN.test(params.id)) throw taskNotFound(params.id);
    await request(
      this.#options.nc,
      runCancelSubject(params.id),
      RunCancelContract,
      { reason: "A2A CancelTask" },
      {
        timeoutMs: CONTROL_TIMEOUT_MS,
        headers: { [Headers.AUTHORIZATION]: bearerOf(context) },
      },
    ).catch((error: unknown) => {
      if (error instanceof LoomError && error.code === ErrorCode.RUN_NOT_WAITING)
        throw new TaskNotCancelableError(`task ${params.id} already ended`);
      return a2aError(error);
    });
    return this.#taskOf(params.id, context);
  }

  async *resubscribe(
    params: SubscribeToTaskRequest,
    context: ServerCallContext,
  ): AsyncGenerator<SdkStreamResponse> {
    const access = await this.#access(params.id, context, PolicyAction.RUNS_SUBSCRIBE);
    const record = maskedRecord(access.stored.record, access.obligations);
    yield StreamCodec.fromJSON({ task: taskOfRun(record) });
    yield* this.#events(params.id, context, access);
  }

  async createTaskPushNotificationConfig(
    params: TaskPushNotificationConfig,
    context: ServerCallContext,
  ): Promise<TaskPushNotificationConfig> {
    await this.#access(params.taskId, context, PolicyAction.PUSH_CONFIGURE);
    // The webhook is sent what its registrant may read, masked as for it: decided now, kept with it.
    const reading = await this.#access(params.taskId, context, PolicyAction.RUNS_READ);
    return this.#savePushConfig(params, params.taskId, reading.obligations ?? NO_MASKS);
  }

  async getTaskPushNotificationConfig(
    params: GetTaskPushNotificationConfigRequest,
    context: ServerCallContext,
  ): Promise<TaskPushNotificationConfig> {
    await this.#access(params.taskId, context, PolicyAction.PUSH_CONFIGURE);
    const config = await this.#options.push.get(params.taskId, params.id);
    if (config === undefined)
      throw new TaskNotFoundError(`task ${params.taskId} has no webhook ${params.id}`);
    return PushConfigCodec.fromJSON(config);
  }

  async listTaskPushNotificationConfigs(
    params: ListTaskPushNotificationConfigsRequest,
    context: ServerCallContext,
  ): Promise<ListTaskPushNotificationConfigsResponse> {
    await this.#access(params.taskId, context, PolicyAction.PUSH_CONFIGURE);
    const configs = this.#options.push.list(params.taskId);
    return { configs: configs.map((config) => PushConfigCodec.fromJSON(config)), nextPageToken: "" };
  }

  async deleteTaskPushNotificationConfig(
    params: DeleteTaskPushNotificationConfigRequest,
    context: ServerCallContext,
  ): Promise<void> {
    await this.#access(params.taskId, context, PolicyAction.PUSH_CONFIGURE);
    await this.#options.push.delete(params.taskId, params.id);
  }

  /** The caller's access to a task, decided by acp-policy; refusals as A2A errors. */
  #access(runId: string, context: ServerCallContext, action: RunReadAction): Promise<RunAccess> {
    return accessRun(this.#options, runId, action, bearerOf(context)).catch(a2aError);
  }

  /**
   * The access of whoever just started or answered a task: "denied" when policy does not let them
   * read it (an approver answering someone else's run), undefined while the run is not stored yet.
   */
  async #readAccess(
    runId: string,
    context: ServerCallContext,
    action: RunReadAction,
  ): Promise<RunAccess | "denied" | undefined> {
    if ((await this.#options.runs.get(runId)) === undefined) return undefined;
    try {
      return await accessRun(this.#options, runId, action, bearerOf(context));
    } catch (error) {
      // The run exists (just read): a refusal, or not found now, means policy does not let the
      // caller read it or follow it.
      if (
        error instanceof LoomError &&
        (error.code === ErrorCode.RUN_NOT_FOUND || error.code === ErrorCode.POLICY_DENIED)
      )
        return "denied";
      throw error;
    }
  }

  /** Keeps a webhook with the masks its registrant's `runs.read` decision asked for. */
  async #savePushConfig(
    params: TaskPushNotificationConfig,
    taskId: string,
    obligations: Obligations,
  ): Promise<TaskPushNotificationConfig> {
    const json = PushConfigCodec.toJSON(params) as Record<string, unknown>;
    const parsed = PushRegistrationSchema.safeParse({
      ...json,
      taskId,
      id: params.id || randomUUID(),
      readerObligations: obligations,
    });
    if (!parsed.success)
      throw new RequestMalformedError(
        `invalid push notification config: ${describeIssues(parsed.error.issues)}`,
      );
    try {
      return PushConfigCodec.fromJSON(await this.#options.push.save(parsed.data));
    } catch (error) {
      throw error instanceof LoomError ? new RequestMalformedError(error.message) : error;
    }
  }

  /**
   * A task's events as they come, masked for the reader, until it ends or waits for input. For a
   * run the caller just submitted, not stored yet when the stream began, access is decided at its
   * first event (the record is stored before any event is published).
   */
  async *#events(
    runId: string,
    context: ServerCallContext,
    access: RunAccess | undefined,
    afterSequence?: number,
  ): AsyncGenerator<SdkStreamResponse> {
    const options = { stopAt: interrupted, ...(afterSequence === undefined ? {} : { afterSequence }) };
    let decided: RunAccess | "denied" | undefined = access;
    for await (const event of followRun(this.#options.js, runId, options)) {
      decided ??= await this.#readAccess(runId, context, PolicyAction.RUNS_SUBSCRIBE);
      if (decided === "denied") return;
      yield StreamCodec.fromJSON(maskedEvent(event, decided?.obligations));
    }
  }

  /**
   * The task for whoever started or answered it: masked for them, its state only when policy does
   * not let them read it; a run just submitted (`contextId` known) that the orchestrator has not
   * stored yet is reported as submitted.
   */
  async #taskOf(runId: string, context: ServerCallContext, contextId?: string): Promise<SdkTask> {
    const access = await this.#readAccess(runId, context, PolicyAction.RUNS_READ);
    if (access === undefined) {
      if (contextId === undefined) throw taskNotFound(runId);
      return TaskCodec.fromJSON({
        id: runId,
        contextId,
        status: { state: TaskState.SUBMITTED, timestamp: new Date().toISOString() },
      });
    }
    if (access === "denied") {
      const { record } = (await this.#options.runs.get(runId)) ?? {};
      if (record === undefined) throw taskNotFound(runId);
      return TaskCodec.fromJSON({
        id: runId,
        contextId: record.contextId,
        status: { state: record.state, timestamp: record.updatedAt },
      });
    }
    return TaskCodec.fromJSON(taskOfRun(maskedRecord(access.stored.record, access.obligations)));
  }

  /**
   * A message for a task that waits for input answers it (`{approved: true|false}` as data, or the
   * text "approve"/"reject"); any other message starts a run of the skill it names.
   */
  async #accept(
    params: SendMessageRequest,
    context: ServerCallContext,
  ): Promise<{ runId: string; contextId: string; afterSequence?: number }> {
    if (params.message === undefined) throw new RequestMalformedError("the request has no message");
    const message = MessageCodec.toJSON(params.message) as Message;
    const authorization = bearerOf(context);
    if (message.taskId) {
      const runId = message.taskId;
      if (!RUN_ID_PATTERN.test(runId)) throw taskNotFound(runId);
      // Whoever waits on the answer follows only what happens after it.
      const afterSequence = await lastEventSequence(this.#options.jsm, runId);
      // The run's input decides first: RUN_NOT_FOUND for a task the caller may not answer, as for
      // one that does not exist, before anything says whether it waits.
      await request(this.#options.nc, runInputSubject(runId), RunInputContract, answerOf(message), {
        timeoutMs: CONTROL_TIMEOUT_MS,
        headers: { [Headers.AUTHORIZATION]: authorization },
      }).catch((error: unknown) => {
        if (!(error instanceof LoomError) || error.code === ErrorCode.RUN_NOT_FOUND) return a2aError(error);
        throw new RequestMalformedError(`${error.code}: ${error.message}`);
      });
      const stored = await this.#options.runs.get(runId);
      if (stored === undefined) throw taskNotFound(runId);
      return { runId, contextId: stored.record.contextId, afterSequence };
    }
    const skill = skillOf(message, params.metadata, this.#options.card());
    // A message sent again (its sender crashed before hearing back) is the run it started: the
    // submission is deduplicated by run id, and the caller follows that run from its start.
    const runId = message.messageId ? runIdOfMessage(authorization, message.messageId) : randomUUID();
    const contextId = message.contextId || (message.messageId ? runId : randomUUID());
    const webhook = params.configuration?.taskPushNotificationConfig;
    // Registered before the run exists, so the webhook hears its every event, masked as the caller
    // reads the run it starts.
    if (webhook !== undefined) {
      const obligations = await readerObligations(this.#options, runId, skill, authorization).catch(
        (error: unknown) => {
          if (error instanceof LoomError && error.code === ErrorCode.POLICY_DENIED)
            throw new RequestMalformedError(`the webhook is refused: ${error.message}`);
          return a2aError(error);
        },
      );
      await this.#savePushConfig(webhook, runId, obligations);
    }
    await publishSubmission(
      this.#options.js,
      { runId, workflow: skill, input: inputOf(message), contextId },
      authorization,
    );
    return { runId, contextId };
  }
}

/** The workflow to run: `metadata.skill` on the message or the request, or the card's only skill. */
function skillOf(
  message: Message,
  requestMetadata: Record<string, unknown> | undefined,
  card: AgentCard,
): string {
  const named = message.metadata?.skill ?? requestMetadata?.skill;
  if (typeof named === "string" && named !== "") return named;
  if (card.skills.length === 1 && card.skills[0] !== undefined) return card.skills[0].id;
  throw new RequestMalformedError(
    `name the skill to run in the message's metadata.skill; skills: ${card.skills.map((skill) => skill.id).join(", ")}`,
  );
}

/** The run input: the first DataPart's object, else the text as `{text}`. */
function inputOf(message: Message): Record<string, unknown> {
  for (const part of message.parts) {
    if ("data" in part && typeof part.data === "object" && part.data !== null && !Array.isArray(part.data)) {
      return part.data as Record<string, unknown>;
    }
  }
  const text = message.parts.flatMap((part) => ("text" in part ? [part.text] : [])).join("\n");
  return text === "" ? {} : { text };
}

/** An answer to a task waiting for input: `{approved}` or other data, or text ("approve"/"reject" decide). */
function answerOf(message: Message): {
  approved?: boolean;
  comment?: string;
  text?: string;
  data?: Record<string, unknown>;
} {
  for (const part of message.parts) {
    if ("data" in part && typeof part.data === "object" && part.data !== null && !Array.isArray(part.data)) {
      const data = part.data as Record<string, unknown>;
      if (typeof data.approved === "boolean") {
        return {
          approved: data.approved,
          ...(typeof data.comment === "string" ? { comment: data.comment } : {}),
        };
      }
      return { data };
    }
    if ("text" in part) {
      const answer = part.text.trim().toLowerCase();
      if (answer === "approve" || answer === "approved" || answer === "yes") return { approved: true };
      if (answer === "reject" || answer === "rejected" || answer === "no") return { approved: false };
      return { text: part.text };
    }
  }
  throw new RequestMalformedError("answer a task that waits for input with a data or text part");
}

/**
 * A refusal as the A2A error a client understands: an unknown task, or one policy does not let the
 * caller touch (the same RUN_NOT_FOUND), is TaskNotFound; anything else stays as it is.
 */
function a2aError(error: unknown): never {
  if (
    error instanceof LoomError &&
    (error.code === ErrorCode.RUN_NOT_FOUND || error.code === ErrorCode.POLICY_DENIED)
  ) {
    throw taskNotFoundOf(error);
  }
  throw error;
}

/** TaskNotFound for `runId`, in the words every other path uses for it. */
function taskNotFound(runId: string): TaskNotFoundError {
  return taskNotFoundOf(runNotFound(runId));
}

function taskNotFoundOf(error: LoomError): TaskNotFoundError {
  return new TaskNotFoundError(`${error.code}: ${error.message}`);
}
