import { randomUUID } from "node:crypto";
import type { Message, Task } from "../../schemas/a2a.ts";
import type { ExecutedCall } from "../../schemas/audit.ts";
import { ErrorCode } from "../../schemas/errors.ts";
import { type ResourceSubscription, subscriptionGrantArguments } from "../../schemas/mcp.ts";
import { type Logger, LoomError, SpanKind, withSpan } from "../kit/index.ts";
import { runOperation } from "./read-prompt-tasks.ts";
import type { ServerPool } from "./server-pool.ts";
import type { TaskHandlerDependencies } from "./task-handler.ts";

/**
 * Who holds each upstream resource subscription this worker made: the runs (gateway sessions,
 * `mcp-<session>`) that asked for it. The server is asked to subscribe for the first of them and
 * to unsubscribe when the last one leaves, so one session's unsubscribe never ends another's.
 */
export class ResourceSubscribers {
  readonly #holders = new Map<string, Set<string>>();

  /** The resources of `server` someone holds a subscription to. */
  uris(server: string): string[] {
    return [...this.#holders.keys()]
      .filter((key) => key.startsWith(`${server}\n`))
      .map((key) => key.slice(server.length + 1));
  }

  has(server: string, uri: string): boolean {
    return (this.#holders.get(keyOf(server, uri))?.size ?? 0) > 0;
  }

  add(server: string, uri: string, subscriber: string): void {
    const key = keyOf(server, uri);
    const holders = this.#holders.get(key) ?? new Set<string>();
    holders.add(subscriber);
    this.#holders.set(key, holders);
  }

  /** Removes `subscriber`; true when it held the subscription and was the last to. */
  removeLast(server: string, uri: string, subscriber: string): boolean {
    const key = keyOf(server, uri);
    const holders = this.#holders.get(key);
    if (holders === undefined || !holders.delete(subscriber)) return false;
    if (holders.size > 0) return false;
    this.#holders.delete(key);
    return true;
  }
}

/**
 * A server that restarted has forgotten its subscriptions: each one still held is made again on
 * the new connection, so its holders keep hearing updates. With several replicas, each restarted
 * one subscribes too, and a client may hear an update twice.
 */
export function resubscribeOnReconnect(
  pool: Pick<ServerPool, "onReconnected">,
  server: string,
  subscribers: ResourceSubscribers,
  log: Logger,
): void {
  pool.onReconnected((client) => {
    for (const uri of subscribers.uris(server)) {
      client.subscribeResource({ uri }).then(
        () =>
          log.info(
            { mcp_server: server, uri },
            "resource subscription made again after the server restarted",
          ),
        (error: unknown) =>
          log.warn(
            { err: error, mcp_server: server, uri },
            "resource subscription lost: the restarted server refused it",
          ),
      );
    }
  });
}

function keyOf(server: string, uri: string): string {
  return `${server}\n${uri}`;
}

/**
 * Serves an A2A task subscribing a gateway session to one resource's updates, or ending that.
 * Granted like a read of the resource (the grant also binds which of the two it is); the server's
 * updates are published by the worker's listener (see main.ts), whoever subscribed.
 */
export async function handleSubscriptionTask(
  deps: TaskHandlerDependencies,
  subscribers: ResourceSubscribers,
  message: Message,
  operation: ResourceSubscription,
  executed: ExecutedCall,
): Promise<Task> {
  const { server, resource: uri, subscription } = operation;
  const subscriber = message.contextId ?? "";
  const target = `${server}.${uri}`;
  const method = `resources/${subscription}`;
  return runOperation(
    deps,
    message,
    { action: "resources.read", target, arguments: subscriptionGrantArguments(operation) },
    server,
    executed,
    async (connection, timeoutMs) => {
      await withSpan(
        `${method} ${uri}`,
        { kind: SpanKind.CLIENT, attributes: { "mcp.method.name": method, "mcp.resource.uri": uri } },
        () =>
          connection.withClient(method, timeoutMs, async (client) => {
            if (client.getServerCapabilities()?.resources?.subscribe !== true) {
              throw new LoomError(
                ErrorCode.INVALID_INPUT,
                `MCP server "${server}" offers no resource subscriptions`,
                { details: { server, uri } },
              );
            }
            if (subscription === "subscribe") {
              if (!subscribers.has(server, uri))
                await client.subscribeResource({ uri }, { timeout: timeoutMs });
              subscribers.add(server, uri, subscriber);
            } else if (subscribers.removeLast(server, uri, subscriber)) {
              await client.unsubscribeResource({ uri }, { timeout: timeoutMs });
            }
          }),
      );
      return { artifactId: randomUUID(), name: target, parts: [{ data: { [subscription]: uri } }] };
    },
  );
}
