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
import {
  type Message,
  PushNotificationConfigSchema,
  TaskState,
  TERMINAL_STATES,
} from "../../../schemas/a2a.ts";
import { RunCancelContract, RunInputContract } from "../../../schemas/contracts.ts";
import { Headers, runCancelSubject, runInputSubject } from "../../../schemas/subjects.ts";
import {
  describeIssues,
  followRun,
  LoomError,
  lastEventSequence,
  publishSubmission,
  request,
} from "../../kit/index.ts";
import type { RunStore } from "../run-store.ts";
import { bearerOf } from "./bearer-user.ts";
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
  js: JetStreamClient;
  jsm: JetStreamManager;
  runs: RunStore;
  push: PushRegistry;
  card: () => AgentCard;
}

/**
 * The A2A operations over NATS: a message starts a run (or answers the one that waits), and every
 * read comes from `loom_runs` and the run's event stream, so any orchestrator replica answers for
 * any task and a restart loses none.
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
    return this.#task(accepted.runId, accepted.contextId);
  }

  async *sendMessageStream(
    params: SendMessageRequest,
    context: ServerCallContext,
  ): AsyncGenerator<SdkStreamResponse> {
    const accepted = await this.#accept(params, context);
    yield* this.#stream(accepted.runId, accepted.contextId, accepted.afterSequence);
  }

  async getTask(params: GetTaskRequest): Promise<SdkTask> {
    return this.#task(params.id);
  }

  async listTasks(params: ListTasksRequest): Promise<ListTasksResponse> {
    const records = [];
    for await (const runId of await this.#options.runs.keys()) {
      const stored = await this.#options.runs.get(runId);
      if (stored === undefined) continue;
      const { record } = stored;
      if (params.contextId !== "" && record.contextId !== params.contextId) continue;
      if (params.status !== 0 && record.state !== taskStateToJSON(params.status)) continue;
      records.push(record);
    }
    records.sort((a, b) => b.updatedAt.localeCompare(a.updatedAt));
    const pageSize =
      params.pageSize && params.pageSize > 0 ? Math.min(params.pageSize, 100) : DEFAULT_PAGE_SIZE;
    const start = params.pageToken === "" ? 0 : Number(params.pageToken);
    if (!Number.isInteger(start) || start < 0)
      throw new RequestMalformedError(`invalid page token "${params.pageToken}"`);
    const page = records.slice(start, start + pageSize);
    return {
      tasks: page.map((record) => TaskCodec.fromJSON(taskOfRun(record))),
      nextPageToken: start + pageSize < records.length ? String(start + pageSize) : "",
      pageSize,
      totalSize: records.length,
    };
  }

  async cancelTask(params: CancelTaskRequest, context: ServerCallContext): Promise<SdkTask> {
    const stored = await this.#options.runs.get(params.id);
    if (stored === undefined) throw new TaskNotFoundError(`no task ${params.id}`);
    if (TERMINAL_STATES.has(stored.record.state))
      throw new TaskNotCancelableError(`task ${params.id} already ended`);
    await request(
      this.#options.nc,
      runCancelSubject(params.id),
      RunCancelContract,
      { reason: "A2A CancelTask" },
      {
        timeoutMs: CONTROL_TIMEOUT_MS,
        headers: { [Headers.AUTHORIZATION]: bearerOf(context) },
      },
    );
    return this.#task(params.id);
  }

  async *resubscribe(params: SubscribeToTaskRequest): AsyncGenerator<SdkStreamResponse> {
    const stored = await this.#options.runs.get(params.id);
    if (stored === undefined) throw new TaskNotFoundError(`no task ${params.id}`);
    yield* this.#stream(params.id);
  }

  async createTaskPushNotificationConfig(
    params: TaskPushNotificationConfig,
  ): Promise<TaskPushNotificationConfig> {
    if ((await this.#options.runs.get(params.taskId)) === undefined)
      throw new TaskNotFoundError(`no task ${params.taskId}`);
    return this.#savePushConfig(params, params.taskId);
  }

  async getTaskPushNotificationConfig(
    params: GetTaskPushNotificationConfigRequest,
  ): Promise<TaskPushNotificationConfig> {
    const config = await this.#options.push.get(params.taskId, params.id);
    if (config === undefined)
      throw new TaskNotFoundError(`task ${params.taskId} has no webhook ${params.id}`);
    return PushConfigCodec.fromJSON(config);
  }

  async listTaskPushNotificationConfigs(
    params: ListTaskPushNotificationConfigsRequest,
  ): Promise<ListTaskPushNotificationConfigsResponse> {
    const configs = await this.#options.push.list(params.taskId);
    return { configs: configs.map((config) => PushConfigCodec.fromJSON(config)), nextPageToken: "" };
  }

  async deleteTaskPushNotificationConfig(params: DeleteTaskPushNotificationConfigRequest): Promise<void> {
    await this.#options.push.delete(params.taskId, params.id);
  }

  async #savePushConfig(
    params: TaskPushNotificationConfig,
    taskId: string,
  ): Promise<TaskPushNotificationConfig> {
    const json = PushConfigCodec.toJSON(params) as Record<string, unknown>;
    const parsed = PushNotificationConfigSchema.safeParse({ ...json, taskId, id: params.id || randomUUID() });
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

  /** The task as it is now, then its events as they come, until it ends or waits for input. */
  async *#stream(
    runId: string,
    contextId?: string,
    afterSequence?: number,
  ): AsyncGenerator<SdkStreamResponse> {
    yield StreamCodec.fromJSON({ task: TaskCodec.toJSON(await this.#task(runId, contextId)) });
    const options = { stopAt: interrupted, ...(afterSequence === undefined ? {} : { afterSequence }) };
    for await (const event of followRun(this.#options.js, runId, options)) {
      yield StreamCodec.fromJSON(event);
    }
  }

  /**
   * The task from its run record; a run just submitted (`contextId` known) that the orchestrator
   * has not stored yet is reported as submitted.
   */
  async #task(runId: string, contextId?: string): Promise<SdkTask> {
    const stored = await this.#options.runs.get(runId);
    if (stored !== undefined) return TaskCodec.fromJSON(taskOfRun(stored.record));
    if (contextId === undefined) throw new TaskNotFoundError(`no task ${runId}`);
    return TaskCodec.fromJSON({
      id: runId,
      contextId,
      status: { state: TaskState.SUBMITTED, timestamp: new Date().toISOString() },
    });
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
      const stored = await this.#options.runs.get(message.taskId);
      if (stored === undefined) throw new TaskNotFoundError(`no task ${message.taskId}`);
      if (stored.record.state !== TaskState.INPUT_REQUIRED) {
        throw new RequestMalformedError(`task ${message.taskId} is not waiting for input`);
      }
      // Whoever waits on the answer follows only what happens after it.
      const afterSequence = await lastEventSequence(this.#options.jsm, message.taskId);
      await request(this.#options.nc, runInputSubject(message.taskId), RunInputContract, answerOf(message), {
        timeoutMs: CONTROL_TIMEOUT_MS,
        headers: { [Headers.AUTHORIZATION]: authorization },
      }).catch((error: unknown) => {
        throw error instanceof LoomError
          ? new RequestMalformedError(`${error.code}: ${error.message}`)
          : error;
      });
      return { runId: message.taskId, contextId: stored.record.contextId, afterSequence };
    }
    const skill = skillOf(message, params.metadata, this.#options.card());
    const runId = randomUUID();
    const contextId = message.contextId || randomUUID();
    const webhook = params.configuration?.taskPushNotificationConfig;
    // Registered before the run exists, so the webhook hears its every event.
    if (webhook !== undefined) await this.#savePushConfig(webhook, runId);
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
