import { Server } from "@modelcontextprotocol/sdk/server/index.js";
import {
  CallToolRequestSchema,
  type CallToolResult,
  CompleteRequestSchema,
  GetPromptRequestSchema,
  ListPromptsRequestSchema,
  ListResourcesRequestSchema,
  ListResourceTemplatesRequestSchema,
  ListToolsRequestSchema,
  McpError,
  ErrorCode as McpErrorCode,
  ReadResourceRequestSchema,
} from "@modelcontextprotocol/sdk/types.js";
import { ErrorCode } from "../../../schemas/errors.ts";
import { type CompletionComplete, completionGrantArguments } from "../../../schemas/mcp.ts";
import type { McpSession } from "../../../schemas/mcp-session.ts";
import { toWireError } from "../../kit/index.ts";
import type { Exposed, FederatedCatalog } from "./federated-catalog.ts";
import type { GatewayPolicy } from "./gateway-policy.ts";
import { completeResultOf, promptResultOf, readResultOf, toolResultOf } from "./mcp-results.ts";
import { notificationRelay } from "./notification-relay.ts";
import { type DispatchOptions, dispatchOperation, type GatewayOperation } from "./operation-dispatch.ts";

/** The MCP error code the specification gives an unknown resource. */
const RESOURCE_NOT_FOUND = -32002;

export interface GatewayDependencies {
  catalog: FederatedCatalog;
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
      capabilities: { tools: {}, resources: {}, prompts: {}, completions: {}, logging: {} },
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
  const dispatch = (operation: GatewayOperation, extra: Parameters<typeof notificationRelay>[0]) =>
    dispatchOperation(deps.dispatch, {
      sessionId: caller.session.id,
      authorization: caller.authorization,
      operation,
      onNotification: notificationRelay(extra),
      signal: extra.signal,
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
      throw new McpError(McpErrorCode.InvalidParams, `Unknown tool: ${request.params.name}`);
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
      );
      return toolResultOf(task);
    } catch (error) {
      // A tool that failed, refused arguments or was denied is a result the model can read.
      const wire = toWireError(error);
      return {
        isError: true,
        content: [{ type: "text", text: wire.message }],
        _meta: { "io.loom/error": wire },
      };
    }
  });

  server.setRequestHandler(ReadResourceRequestSchema, async (request, extra) => {
    const { uri } = request.params;
    const owner = deps.catalog.serverOfUri(uri);
    if (owner === undefined) throw new McpError(RESOURCE_NOT_FOUND, `Resource not found: ${uri}`, { uri });
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

  server.setRequestHandler(GetPromptRequestSchema, async (request, extra) => {
    const prompt = deps.catalog.findPrompt(request.params.name);
    if (prompt === undefined) {
      throw new McpError(McpErrorCode.InvalidParams, `Unknown prompt: ${request.params.name}`);
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

function promptTarget(catalog: FederatedCatalog, name: string): { server: string; upstream: string } {
  const prompt = catalog.findPrompt(name);
  if (prompt === undefined) throw new McpError(McpErrorCode.InvalidParams, `Unknown prompt: ${name}`);
  return prompt;
}

function templateTarget(catalog: FederatedCatalog, uri: string): { server: string; upstream: string } {
  const server = catalog.serverOfTemplate(uri) ?? catalog.serverOfUri(uri);
  if (server === undefined) throw new McpError(RESOURCE_NOT_FOUND, `Resource not found: ${uri}`, { uri });
  return { server, upstream: uri };
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
  throw new McpError(code, wire.message, wire);
}
