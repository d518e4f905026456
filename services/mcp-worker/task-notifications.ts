import type { NatsConnection } from "@nats-io/transport-node";
import type { Message } from "../../schemas/a2a.ts";
import { type TaskNotification, TaskNotificationSchema } from "../../schemas/mcp.ts";
import { taskNotificationsSubject } from "../../schemas/subjects.ts";
import { encodePayload, type Logger } from "../kit/index.ts";
import { type CallObserver, PINO_LEVEL } from "./mcp-connection.ts";
import type { TaskMasking } from "./task-masking.ts";

/**
 * Relays what an MCP server says while it works on an A2A task (progress, log messages) on the
 * task's notifications subject, where the orchestrator turns progress into run events.
 */
export class TaskNotifications {
  readonly #nc: NatsConnection;
  readonly #log: Logger;

  constructor(nc: NatsConnection, log: Logger) {
    this.#nc = nc;
    this.#log = log;
  }

  /**
   * The observer for one task's MCP request; none for a task without an id (nobody could listen).
   * `step` is the workflow step the task is for, if any. `traceId` is the call's trace:
   * notifications arrive outside its span, so it is logged by hand. What the server says is masked
   * as the task's grant obliges before it is logged or published.
   */
  observer(
    message: Message,
    step: { runId: string; stepId: string } | undefined,
    traceId: string | undefined,
    masking: TaskMasking,
  ): CallObserver | undefined {
    const taskId = message.taskId;
    if (taskId === undefined) return undefined;
    const about = { taskId, ...(step === undefined ? {} : { runId: step.runId, stepId: step.stepId }) };
    // Made at the first notification: most calls send none.
    let taskLog: Logger | undefined;
    const log = () => {
      taskLog ??= this.#log.child({
        task_id: taskId,
        ...(traceId === undefined ? {} : { trace_id: traceId }),
        ...(step === undefined ? {} : { run_id: step.runId, step_id: step.stepId }),
      });
      return taskLog;
    };
    return {
      onProgress: ({ progress, total, message: said }) => {
        const text = said === undefined ? undefined : masking.text(said);
        log().debug({ progress, total }, "MCP progress");
        this.#publish({
          kind: "progress",
          ...about,
          progress,
          ...(total === undefined ? {} : { total }),
          ...(text === undefined ? {} : { message: text }),
        });
      },
      onLog: ({ level, logger, data: said }) => {
        const data = masking.value(said);
        log()[PINO_LEVEL[level]]({ mcp_logger: logger, data }, "MCP server log");
        this.#publish({ kind: "log", ...about, level, ...(logger === undefined ? {} : { logger }), data });
      },
    };
  }

  #publish(notification: TaskNotification): void {
    try {
      this.#nc.publish(
        taskNotificationsSubject(notification.taskId),
        encodePayload(TaskNotificationSchema, notification, "task notification"),
      );
    } catch (error) {
      // A notification is advice: losing one (connection draining) must not fail the call.
      this.#log.warn({ err: error, task_id: notification.taskId }, "task notification not published");
    }
  }
}
