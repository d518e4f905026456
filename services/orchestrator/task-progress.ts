import type { NatsConnection } from "@nats-io/transport-node";
import { TaskNotificationSchema } from "../../schemas/mcp.ts";
import type { StepProgress } from "../../schemas/run.ts";
import { taskNotificationsSubject } from "../../schemas/subjects.ts";
import { type Logger, listen } from "../kit/index.ts";

/** A relay of one task's progress; `stop` ends it once every report heard so far is passed on. */
export interface ProgressRelay {
  stop(): Promise<void>;
}

/**
 * Passes the progress an MCP server reports for an A2A task (published by the worker on the task's
 * notifications subject) to `onProgress`, one report at a time and in order, so run events show
 * the step moving. Log notifications stay with the worker's logs.
 */
export function relayTaskProgress(
  nc: NatsConnection,
  taskId: string,
  onProgress: (progress: StepProgress) => Promise<void>,
  log: Logger,
): ProgressRelay {
  let chain: Promise<void> = Promise.resolve();
  const subscription = listen(nc, {
    subject: taskNotificationsSubject(taskId),
    schema: TaskNotificationSchema,
    what: "task notification",
    log,
    handle: (notification) => {
      if (notification.kind !== "progress") return;
      const { progress: value, total, message: text } = notification;
      const progress: StepProgress = {
        progress: value,
        ...(total === undefined ? {} : { total }),
        ...(text === undefined ? {} : { message: text }),
      };
      chain = chain
        .then(() => onProgress(progress))
        .catch((problem: unknown) => log.warn({ err: problem, task_id: taskId }, "progress not relayed"));
    },
  });
  return {
    async stop() {
      subscription.unsubscribe();
      await chain;
    },
  };
}

/** `50% step slow: halfway` — the words of a progress run event. */
export function progressText(stepId: string, progress: StepProgress): string {
  const amount =
    progress.total !== undefined && progress.total > 0
      ? `${Math.round((progress.progress / progress.total) * 100)}%`
      : `${progress.progress}`;
  return `step ${stepId}: ${amount}${progress.message === undefined ? "" : ` ${progress.message}`}`;
}
