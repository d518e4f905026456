import type { RequestHandlerExtra } from "@modelcontextprotocol/sdk/shared/protocol.js";
import type { ServerNotification, ServerRequest } from "@modelcontextprotocol/sdk/types.js";
import type { TaskNotification } from "../../../schemas/mcp.ts";

/**
 * Passes what the upstream server reports while it works on to the gateway's client, on the SSE
 * stream of the request it concerns: progress as `notifications/progress` (only when the client
 * asked for it with a progressToken), log lines as `notifications/message`.
 */
export function notificationRelay(
  extra: RequestHandlerExtra<ServerRequest, ServerNotification>,
): (notification: TaskNotification) => Promise<void> {
  const progressToken = extra._meta?.progressToken;
  return async (notification) => {
    if (notification.kind === "progress") {
      if (progressToken === undefined) return;
      await extra.sendNotification({
        method: "notifications/progress",
        params: {
          progressToken,
          progress: notification.progress,
          ...(notification.total === undefined ? {} : { total: notification.total }),
          ...(notification.message === undefined ? {} : { message: notification.message }),
        },
      });
      return;
    }
    await extra.sendNotification({
      method: "notifications/message",
      params: {
        level: notification.level,
        ...(notification.logger === undefined ? {} : { logger: notification.logger }),
        data: notification.data,
      },
    });
  };
}
