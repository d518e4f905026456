import type { NatsConnection, Subscription } from "@nats-io/transport-node";
import { TaskNotificationSchema } from "../../schemas/mcp.ts";
import type { StepProgress } from "../../schemas/run.ts";
import { Subjects } from "../../schemas/subjects.ts";
import { type Logger, listen } from "../kit/index.ts";

/** A relay of one task's progress; `stop` ends it once every report heard so far is passed on. */
export interface ProgressRelay {
  stop(): Promise<void>;
}

interface Follower {
  onProgress: (progress: StepProgress) => Promise<void>;
  /** Reports are passed on one at a time, in order. */
  chain: Promise<void>;
}

/**
 * The progress MCP servers report for the A2A tasks of this orchestrator's steps (published by the
 * worker on each task's notifications subject), heard on one subscription for the whole process
 * rather than one per step. A step follows its task while it runs; log notifications stay with the
 * worker's logs.
 */
export class TaskProgressFeed {
  readonly #followers = new Map<string, Follower>();
  readonly #subscription: Subscription;
  readonly #log: Logger;

  constructor(nc: NatsConnection, log: Logger) {
    this.#log = log;
    this.#subscription = listen(nc, {
      subject: Subjects.TASK_NOTIFICATIONS_ALL,
      schema: TaskNotificationSchema,
      what: "task notification",
      log,
      handle: (notification) => {
        const follower = this.#followers.get(notification.taskId);
        if (follower === undefined || notification.kind !== "progress") return;
        const { progress: value, total, message: text } = notification;
        const progress: StepProgress = {
          progress: value,
          ...(total === undefined ? {} : { total }),
          ...(text === undefined ? {} : { message: text }),
        };
        follower.chain = follower.chain
          .then(() => follower.onProgress(progress))
          .catch((problem: unknown) =>
            this.#log.warn({ err: problem, task_id: notification.taskId }, "progress not relayed"),
          );
      },
    });
  }

  /** Passes the progress reported for task `taskId` to `onProgress` until the relay is stopped. */
  follow(taskId: string, onProgress: (progress: StepProgress) => Promise<void>): ProgressRelay {
    const follower: Follower = { onProgress, chain: Promise.resolve() };
    this.#followers.set(taskId, follower);
    return {
      stop: async () => {
        if (this.#followers.get(taskId) === follower) this.#followers.delete(taskId);
        await follower.chain;
      },
    };
  }

  close(): void {
    this.#subscription.unsubscribe();
  }
}

/** `50% step slow: halfway` — the words of a progress run event. */
export function progressText(stepId: string, progress: StepProgress): string {
  const amount =
    progress.total !== undefined && progress.total > 0
      ? `${Math.round((progress.progress / progress.total) * 100)}%`
      : `${progress.progress}`;
  return `step ${stepId}: ${amount}${progress.message === undefined ? "" : ` ${progress.message}`}`;
}
