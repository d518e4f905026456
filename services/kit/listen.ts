import type { Msg, NatsConnection, Subscription } from "@nats-io/transport-node";
import type { z } from "zod";
import { parsePayload, respondWithError } from "./bus.ts";
import { toWireError } from "./errors.ts";
import type { Logger } from "./logger.ts";

export interface ListenOptions<Schema extends z.ZodType> {
  subject: string;
  /** Queue group: one member takes each message. Without one, every subscriber sees every message. */
  queue?: string;
  schema: Schema;
  /** What the message is, in log lines and errors ("task cancel"). */
  what: string;
  log: Logger;
  /** Acts on one parsed message; a throw or a rejection is logged and goes no further. */
  handle: (body: z.infer<Schema>, msg: Msg) => void | Promise<void>;
}

/**
 * Subscribes to messages that get no answer (broadcasts, notifications). Each is parsed with its
 * schema; a malformed one is dropped with a log line naming the subject and the problem, and a
 * sender that waits for an answer gets it as a typed error. A handler that fails is logged. No
 * message can end the subscription or the process.
 */
export function listen<Schema extends z.ZodType>(
  nc: NatsConnection,
  options: ListenOptions<Schema>,
): Subscription {
  const logFields = { subject: options.subject, what: options.what };
  const refuse = (msg: Msg, error: unknown, level: "warn" | "error", line: string) => {
    options.log[level]({ ...logFields, err: error }, line);
    if (msg.reply !== undefined) {
      respondWithError(msg, toWireError(error), {
        maxPayload: nc.info?.max_payload,
        log: options.log,
        subject: options.subject,
      });
    }
  };
  return nc.subscribe(options.subject, {
    ...(options.queue === undefined ? {} : { queue: options.queue }),
    callback: (error, msg) => {
      if (error !== null) {
        options.log.error({ ...logFields, err: error }, "subscription failed");
        return;
      }
      let body: z.infer<Schema>;
      try {
        body = parsePayload(options.schema, msg.data, options.what);
      } catch (problem) {
        refuse(msg, problem, "warn", "malformed message dropped");
        return;
      }
      try {
        void Promise.resolve(options.handle(body, msg)).catch((problem: unknown) =>
          refuse(msg, problem, "error", "message handler failed"),
        );
      } catch (problem) {
        refuse(msg, problem, "error", "message handler failed");
      }
    },
  });
}
