import { Server } from "@modelcontextprotocol/sdk/server/index.js";
import {
  CallToolRequestSchema,
  type CallToolResult,
  CancelledNotificationSchema,
  CompleteRequestSchema,
  GetPromptRequestSchema,
  ListPromptsRequestSchema,
  ListResourcesRequestSchema,
  ListResourceTemplatesRequestSchema,
  ListToolsRequestSchema,
  ErrorCode as McpErrorCode,
  ReadResourceRequestSchema,
  SetLevelRequestSchema,
  SubscribeRequestSchema,
  UnsubscribeRequestSchema,
} from "@modelcontextprotocol/sdk/types.js";
import { ErrorCode, type WireError } from "../../../schemas/errors.ts";
import { type CompletionComplete, completionGrantArguments } from "../../../schemas/mcp.ts";
import type { McpSession } from "../../../schemas/mcp-session.ts";
import { contextFromFields, inContext, toWireError } from "../../kit/index.ts";
import { announceCancel, cancellable } from "./cancellation.ts";
import type { Exposed, FederatedCatalog } from "./federated-catalog.ts";
import type { GatewayPolicy } from "./gateway-policy.ts";
import { completeResultOf, promptResultOf, readResultOf, toolResultOf } from "./mcp-results.ts";
import { notificationRelay } from "./notification-relay.ts";
import {
  type ClientAnswers,
  type DispatchOptions,
  dispatchOperation,
  type GatewayOperation,
  subscription,
} from "./operation-dispatch.ts";
import { clientAnswers } from "./server-request-relay.ts";
import { MAX_SUBSCRIPTIONS, type SessionStore } from "./session-store.ts";

/** What the gateway offers every client. */
const GATEWAY_CAPABILITIES = {
  tools: { listChanged: true },
  resources: { subscribe: true, listChanged: true },
  prompts: { listChanged: true },
  completions: {},
  logging: {},
};

/** The MCP error code the specification gives an unknown resource. */
const RESOURCE_NOT_FOUND = -32002;

export interface GatewayDependencies {
  catalog: FederatedCatalog;
  sessions: SessionStore;
  policy: GatewayPolicy;
  dispatch: DispatchOptions;
  version: string;
}

/** Who is calling, in which session. */
export interface CallerContext {
  session: McpSession;
  /** `Bearer <token>`, forwarded to acp-policy only. */
  authorization: string;
}

/**
 * An MCP server for one HTTP request of one session: the lists are read from the federated
 * catalog (filtered by what policy lets the caller do), every operation is dispatched through
 * policy to the mcp-worker. It holds no state of its own, so any replica can build it for any
 * session.
 */
export function createGatewayServer(deps: GatewayDependencies, caller: CallerContext): Server {
  const server = new Server(
    { name: "loom-mcp-gateway", title: "Loom MCP gateway", version: deps.version },
    {
      // Subscriptions and list changes reach the client over its GET /mcp stream (session-streams.ts).
      capabilities: GATEWAY_CAPABILITIES,
      instructions:
        "Loom federates the tools, resources and prompts of its MCP servers, named <server>.<name>. " +
        "Every call is decided by policy for your token, audited, and may have fields masked.",
    },
  );
  const permittedItems = async <T>(
    action: GatewayOperation["action"],
    exposed: Exposed<T>[],
  ): Promise<T[]> => {
    const allowed = await deps.policy.permitted(
      caller.authorization,
      exposed.map((entry) => ({ action, target: `${entry.server}.${entry.upstream}` })),
    );
    return exposed.filter((_, index) => allowed[index] === true).map((entry) => entry.item);
  };
  // Each operation stops when the client cancels it (from any replica), and joins the client's
  // trace when its `_meta` carries one (MCP semantic conventions).
  const dispatch = async (
    operation: GatewayOperation,
    extra: Parameters<typeof notificationRelay>[0],
    serverRequests?: ClientAnswers,
  ) => {
    const { nc } = deps.dispatch;
    const cancel = cancellable(nc, caller.session.id, extra.requestId, extra.signal, deps.dispatch.log);
    try {
      return await inContext(contextFromFields(extra._meta), () =>
        dispatchOperation(deps.dispatch, {
          sessionId: caller.session.id,
          authorization: caller.authorization,
          operation,
          onNotification: notificationRelay(extra, caller.session.logLevel),
          ...(serverRequests === undefined ? {} : { serverRequests }),
          signal: cancel.signal,
        }),
      );
    } finally {
      cancel.release();
    }
  };
  // The request it cancels may be running on another replica: tell them all.
  server.setNotificationHandler(CancelledNotificationSchema, (notification) => {
    const { requestId, reason } = notification.params;
    if (requestId !== undefined) {
      announceCancel(deps.dispatch.nc, caller.session.id, {
        requestId,
        ...(reason === undefined ? {} : { reason }),
      });
    }
  });

  // The level outlives this request's server: it is kept with the session, for every replica.
  server.setRequestHandler(SetLevelRequestSchema, async (request) => {
    await deps.sessions.setLogLevel(caller.session, request.params.level);
    return {};
  });
  server.setRequestHandler(ListToolsRequestSchema, async () => ({
    tools: await permittedItems("tools.call", deps.catalog.tools()),
  }));
  server.setRequestHandler(ListResourcesRequestSchema, async () => ({
    resources: await permittedItems("resources.read", deps.catalog.resources()),
  }));
  server.setRequestHandler(ListResourceTemplatesRequestSchema, async () => ({
    resourceTemplates: await permittedItems("resources.read", deps.catalog.resourceTemplates()),
  }));
  server.setRequestHandler(ListPromptsRequestSchema, async () => ({
    prompts: await permittedItems("prompts.get", deps.catalog.prompts()),
  }));

  server.setRequestHandler(CallToolRequestSchema, async (request, extra): Promise<CallToolResult> => {
    const tool = deps.catalog.findTool(request.params.name);
    if (tool === undefined) {
      throw new JsonRpcError(McpErrorCode.InvalidParams, `Unknown tool: ${request.params.name}`);
    }
    const args = request.params.arguments ?? {};
    try {
      const task = await dispatch(
        {
          action: "tools.call",
          target: `${tool.server}.${tool.upstream}`,
          arguments: args,
          operation: { server: tool.server, tool: tool.upstream, arguments: args },
          method: "tools/call",
        },
        extra,
        // A server may ask the client to sample or to ask its user while it runs a tool.
        clientAnswers(deps.dispatch, caller, extra),
      );
      const result = toolResultOf(task);
      await rememberLinks(deps, caller, tool.server, result);
      return result;
    } catch (error) {
      // A tool that failed, refused arguments or was denied is a result the model can read.
      const wire = toWireError(error);
      return {
        isError: true,
        content: [{ type: "text", text: describeFailure(wire) }],
        _meta: { "io.loom/error": wire },
      };
    }
  });

  server.setRequestHandler(ReadResourceRequestSchema, async (request, extra) => {
    const { uri } = request.params;
    const owner = deps.catalog.serverOfUri(uri) ?? caller.session.links?.[uri];
    if (owner === undefined) throw resourceNotFound(uri);
    const task = await dispatch(
      {
        action: "resources.read",
        target: `${owner}.${uri}`,
        arguments: {},
        operation: { server: owner, resource: uri },
        method: "resources/read",
      },
      extra,
    ).catch(toMcpError);
    return readResultOf(task, uri);
  });

  // A subscription is decided like a read of the resource, and made by the worker on the server;
  // the session remembers it, so its updates reach the session's GET stream on any replica.
  server.setRequestHandler(SubscribeRequestSchema, async (request, extra) => {
    const { uri } = request.params;
    const owner = deps.catalog.serverOfUri(uri) ?? caller.session.links?.[uri];
    if (owner === undefined) throw resourceNotFound(uri);
    const held = caller.session.subscriptions ?? {};
    if (!(uri in held) && Object.keys(held).length >= MAX_SUBSCRIPTIONS) {
      throw new JsonRpcError(
        McpErrorCode.InvalidRequest,
        `an MCP session may subscribe to at most ${MAX_SUBSCRIPTIONS} resources; unsubscribe from some first`,
      );
    }
    await dispatch(subscription(owner, uri, "subscribe"), extra).catch(toMcpError);
    await deps.sessions.subscribe(caller.session.id, uri, owner).catch(toMcpError);
    return {};
  });

  // The session stops hearing of the resource at once; the server is told when no one else of
  // this worker's subscribers still holds it.
  server.setRequestHandler(UnsubscribeRequestSchema, async (request, extra) => {
    const { uri } = request.params;
    const owner = await deps.sessions.unsubscribe(caller.session.id, uri).catch(toMcpError);
    if (owner === undefined) {
      throw new JsonRpcError(McpErrorCode.InvalidParams, `This session is not subscribed to ${uri}`, {
        uri,
        code: ErrorCode.INVALID_INPUT,
        message: `This session is not subscribed to ${uri}`,
      });
    }
    await dispatch(subscription(owner, uri, "unsubscribe"), extra).catch(toMcpError);
    return {};
  });

  server.setRequestHandler(GetPromptRequestSchema, async (request, extra) => {
    const prompt = deps.catalog.findPrompt(request.params.name);
    if (prompt === undefined) {
      throw new JsonRpcError(McpErrorCode.InvalidParams, `Unknown prompt: ${request.params.name}`);
    }
    const args = request.params.arguments ?? {};
    const task = await dispatch(
      {
        action: "prompts.get",
        target: `${prompt.server}.${prompt.upstream}`,
        arguments: args,
        operation: { server: prompt.server, prompt: prompt.upstream, arguments: args },
        method: "prompts/get",
      },
      extra,
    ).catch(toMcpError);
    return promptResultOf(task);
  });

  server.setRequestHandler(CompleteRequestSchema, async (request, extra) => {
    const { ref, argument, context } = request.params;
    const target =
      ref.type === "ref/prompt"
        ? promptTarget(deps.catalog, ref.name)
        : templateTarget(deps.catalog, ref.uri);
    const operation: CompletionComplete = {
      server: target.server,
      complete: {
        ref:
          ref.type === "ref/prompt"
            ? { type: ref.type, name: target.upstream }
            : { type: ref.type, uri: ref.uri },
        argument,
        ...(context?.arguments === undefined ? {} : { context: { arguments: context.arguments } }),
      },
    };
    const task = await dispatch(
      {
        action: ref.type === "ref/prompt" ? "prompts.get" : "resources.read",
        target: `${target.server}.${target.upstream}`,
        arguments: completionGrantArguments(operation),
        operation,
        method: "completion/complete",
      },
      extra,
    ).catch(toMcpError);
    return completeResultOf(task);
  });
  return server;
}

/**
 * Notes in the session which server the resources a tool linked to belong to, before the client
 * sees the links: it may read one at once, before the server's list_changed reached the catalog,
 * or one the server never lists. Only links the catalog cannot route are kept.
 */
async function rememberLinks(
  deps: GatewayDependencies,
  caller: CallerContext,
  server: string,
  result: CallToolResult,
): Promise<void> {
  const uris = result.content.flatMap((block) => {
    if (block.type === "resource_link") return [block.uri];
    return block.type === "resource" ? [block.resource.uri] : [];
  });
  const unrouted = uris.filter((uri) => deps.catalog.serverOfUri(uri) === undefined);
  if (unrouted.length === 0) return;
  try {
    await deps.sessions.rememberLinks(
      caller.session.id,
      Object.fromEntries(unrouted.map((uri) => [uri, server])),
    );
  } catch (error) {
    // The call itself succeeded: its result goes out, and a read of a link may then find no server.
    deps.dispatch.log.warn(
      { err: error, mcp_session: caller.session.id, mcp_server: server },
      "resource links of a tool result not recorded in the session",
    );
  }
}

function promptTarget(catalog: FederatedCatalog, name: string): { server: string; upstream: string } {
  const prompt = catalog.findPrompt(name);
  if (prompt === undefined) throw new JsonRpcError(McpErrorCode.InvalidParams, `Unknown prompt: ${name}`);
  return prompt;
}

function templateTarget(catalog: FederatedCatalog, uri: string): { server: string; upstream: string } {
  const server = catalog.serverOfTemplate(uri) ?? catalog.serverOfUri(uri);
  if (server === undefined) throw resourceNotFound(uri);
  return { server, upstream: uri };
}

/**
 * A URI no server lists or has a template for: the specification's code and `data.uri`, with
 * Loom's typed error beside it as every other gateway error carries one.
 */
function resourceNotFound(uri: string): JsonRpcError {
  const message = `Resource ${uri} not found: no server lists it or has a template it matches`;
  return new JsonRpcError(RESOURCE_NOT_FOUND, message, { uri, code: ErrorCode.INVALID_INPUT, message });
}

/**
 * A JSON-RPC error as the SDK sends it (code, message, data), without the "MCP error <code>:"
 * prefix McpError puts in its message, which the client's McpError would add a second time.
 */
class JsonRpcError extends Error {
  readonly code: number;
  readonly data: unknown;

  constructor(code: number, message: string, data?: unknown) {
    super(message);
    this.name = "JsonRpcError";
    this.code = code;
    this.data = data;
  }
}

/** A Loom failure as the JSON-RPC error an MCP client expects; `data` keeps Loom's code and rule. */
function toMcpError(error: unknown): never {
  const wire = toWireError(error);
  const code =
    wire.code === ErrorCode.INVALID_INPUT
      ? McpErrorCode.InvalidParams
      : wire.code === ErrorCode.POLICY_DENIED || wire.code === ErrorCode.UNAUTHENTICATED
        ? McpErrorCode.InvalidRequest
        : McpErrorCode.InternalError;
  throw new JsonRpcError(code, describeFailure(wire), wire);
}

/** The failure's message, naming the policy rule that denied it when the message does not. */
function describeFailure(wire: WireError): string {
  const rule = wire.details?.rule;
  return typeof rule === "string" && !wire.message.includes(rule)
    ? `${wire.message} (rule ${rule})`
    : wire.message;
}
