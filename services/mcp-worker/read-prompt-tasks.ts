import { randomUUID } from "node:crypto";
import type { GetPromptResult, ReadResourceResult } from "@modelcontextprotocol/sdk/types.js";
import { type Artifact, type Message, type Part, type Task, TaskState } from "../../schemas/a2a.ts";
import type { ExecutedCall } from "../../schemas/audit.ts";
import { ErrorCode } from "../../schemas/errors.ts";
import { type PromptGet, type ResourceRead, ToolCallMetadataSchema } from "../../schemas/mcp.ts";
import { activeTraceId, LoomError, SpanKind, withSpan } from "../kit/index.ts";
import type { CallObserver, McpConnection } from "./mcp-connection.ts";
import { recordedVersion, runGrantedOnce, type TaskHandlerDependencies } from "./task-handler.ts";
import { TaskMasking } from "./task-masking.ts";

/** Serves an A2A task asking for one MCP resource; the artifact holds its contents. */
export async function handleReadTask(
  deps: TaskHandlerDependencies,
  message: Message,
  operation: ResourceRead,
  executed: ExecutedCall,
  signal: AbortSignal,
): Promise<Task> {
  const target = `${operation.server}.${operation.resource}`;
  return runOperation(
    deps,
    message,
    { action: "resources.read", target, arguments: {} },
    operation.server,
    executed,
    async (connection, timeoutMs, observer) => {
      const result = await withSpan(
        `resources/read ${operation.resource}`,
        {
          kind: SpanKind.CLIENT,
          attributes: { "mcp.method.name": "resources/read", "mcp.resource.uri": operation.resource },
        },
        () => connection.readResource(operation.resource, timeoutMs, signal, observer),
      );
      return { artifactId: randomUUID(), name: target, parts: resourceParts(result) };
    },
  );
}

/** Serves an A2A task asking for one rendered MCP prompt; the artifact holds its messages. */
export async function handlePromptTask(
  deps: TaskHandlerDependencies,
  message: Message,
  operation: PromptGet,
  executed: ExecutedCall,
  signal: AbortSignal,
): Promise<Task> {
  const target = `${operation.server}.${operation.prompt}`;
  return runOperation(
    deps,
    message,
    { action: "prompts.get", target, arguments: operation.arguments },
    operation.server,
    executed,
    async (connection, timeoutMs, observer) => {
      const result: GetPromptResult = await withSpan(
        `prompts/get ${operation.prompt}`,
        {
          kind: SpanKind.CLIENT,
          attributes: { "mcp.method.name": "prompts/get", "gen_ai.prompt.name": operation.prompt },
        },
        () => connection.getPrompt(operation.prompt, operation.arguments, timeoutMs, signal, observer),
      );
      const rendered = { description: result.description, messages: result.messages };
      return {
        artifactId: randomUUID(),
        name: target,
        parts: [{ data: rendered, mediaType: "application/json" }],
      };
    },
  );
}

/**
 * Grant first, then the step's stored outcome if it has one, else the operation itself, whose
 * outcome is masked as granted. `work` gets the task's observer, which relays (masked as granted)
 * what the server says meanwhile; `executed` is filled in with the call that went out.
 */
export async function runOperation(
  deps: TaskHandlerDependencies,
  message: Message,
  granted: { action: "resources.read" | "prompts.get"; target: string; arguments: Record<string, unknown> },
  server: string,
  executed: ExecutedCall,
  work: (
    connection: Pick<McpConnection, "readResource" | "getPrompt" | "withClient">,
    timeoutMs: number,
    observer: CallObserver | undefined,
  ) => Promise<Artifact>,
): Promise<Task> {
  const step = ToolCallMetadataSchema.safeParse(message.metadata ?? {}).data;
  const claims = await deps.grants.admit(message, step?.grant, {
    ...granted,
    runId: step?.runId,
    stepId: step?.stepId,
    attempt: step?.attempt ?? 0,
  });
  const connection = deps.connections.get(server);
  if (connection === undefined) {
    throw new LoomError(
      ErrorCode.UNKNOWN_SERVER,
      `no MCP server named "${server}" is configured on this worker`,
    );
  }
  const timeoutMs = Math.min(step?.timeoutMs ?? connection.config.timeout, connection.config.timeout);
  const budgetMs = step?.timeoutMs ?? timeoutMs;
  const version = connection.chooseVersion();
  const masking = new TaskMasking(claims.obligations);
  const execute = async (): Promise<Task> => {
    // Reads and prompts change nothing: a server failure may be retried on any replica.
    const { result, serverVersion } = await connection.run(
      (replica, attemptTimeoutMs) =>
        work(
          masking.around(deps.calls.around(replica, executed, recordedVersion(connection, version))),
          attemptTimeoutMs,
          deps.notifications?.observer(message, step, activeTraceId(), masking),
        ),
      { version, timeoutMs, budgetMs, repeatable: true },
    );
    return {
      id: message.taskId ?? message.messageId,
      contextId: message.contextId ?? "",
      status: { state: TaskState.COMPLETED, timestamp: new Date().toISOString() },
      artifacts: [{ ...result, metadata: { ...result.metadata, serverVersion } }],
    };
  };
  return runGrantedOnce(deps, message, { step, budgetMs, executed }, () => masking.outcome(execute));
}

function resourceParts(result: ReadResourceResult): Part[] {
  const parts: Part[] = result.contents.map((content) => {
    const mediaType = content.mimeType === undefined ? {} : { mediaType: content.mimeType };
    if ("text" in content && typeof content.text === "string") {
      if (content.mimeType === "application/json") {
        try {
          return { data: JSON.parse(content.text) ?? {}, filename: content.uri, ...mediaType };
        } catch {
          return { text: content.text, filename: content.uri, ...mediaType };
        }
      }
      return { text: content.text, filename: content.uri, ...mediaType };
    }
    return { raw: String("blob" in content ? content.blob : ""), filename: content.uri, ...mediaType };
  });
  return parts.length > 0 ? parts : [{ text: "" }];
}
