import type { NatsConnection } from "@nats-io/transport-node";
import { z } from "zod";
import { agentCancelSubject, MCP_WORKER_AGENT } from "../../schemas/subjects.ts";
import { type Logger, listen } from "../kit/index.ts";

const CancelSchema = z.object({ taskId: z.string().min(1) });

/**
 * Tasks this worker is running, so a cancel broadcast for one of them (a run canceled, a parallel
 * branch abandoned) aborts its MCP request, which tells the server with notifications/cancelled.
 */
export class InFlightTasks {
  readonly #controllers = new Map<string, AbortController>();

  /** Listens for cancels addressed to this agent; every replica hears them, the holder acts. */
  listen(nc: NatsConnection, log: Logger): void {
    listen(nc, {
      subject: agentCancelSubject(MCP_WORKER_AGENT),
      schema: CancelSchema,
      what: "task cancel",
      log,
      handle: ({ taskId }) => {
        const controller = this.#controllers.get(taskId);
        if (controller === undefined) return;
        log.info({ task_id: taskId }, "task canceled by its run");
        controller.abort();
      },
    });
  }

  /** Runs `work` with a signal that a cancel for `taskId` aborts. */
  async run<T>(taskId: string | undefined, work: (signal: AbortSignal) => Promise<T>): Promise<T> {
    const controller = new AbortController();
    if (taskId === undefined) return work(controller.signal);
    this.#controllers.set(taskId, controller);
    try {
      return await work(controller.signal);
    } finally {
      if (this.#controllers.get(taskId) === controller) this.#controllers.delete(taskId);
    }
  }
}
