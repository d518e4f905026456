import { type Message, type Task, TaskState } from "../../schemas/a2a.ts";
import { ErrorCode } from "../../schemas/errors.ts";
import { type ToolCall, ToolCallMetadataSchema, ToolCallSchema } from "../../schemas/mcp.ts";
import {
  describeIssues,
  type JsonSchemaValidator,
  type Logger,
  LoomError,
  SpanKind,
  withSpan,
} from "../kit/index.ts";
import { resultText, toolResultToArtifact } from "./artifacts.ts";
import type { McpConnection } from "./mcp-connection.ts";

export interface TaskHandlerDependencies {
  connections: ReadonlyMap<string, McpConnection>;
  validator: JsonSchemaValidator;
  log: Logger;
}

/** Serves one A2A task: its DataPart names a tool call; the reply is the finished Task. */
export async function handleToolTask(deps: TaskHandlerDependencies, message: Message): Promise<Task> {
  const call = readToolCall(message);
  const metadata = ToolCallMetadataSchema.safeParse(message.metadata ?? {});
  const connection = deps.connections.get(call.server);
  if (connection === undefined) {
    throw new LoomError(
      ErrorCode.UNKNOWN_SERVER,
      `no MCP server named "${call.server}" is configured on this worker`,
    );
  }
  const qualified = `${call.server}.${call.tool}`;
  const tool = await connection.findTool(call.tool);
  if (tool === undefined) {
    throw new LoomError(ErrorCode.UNKNOWN_TOOL, `MCP server "${call.server}" has no tool "${call.tool}"`);
  }
  deps.validator.assertValid(tool.inputSchema, call.arguments, `arguments of ${qualified}`);

  const timeoutMs = Math.min(
    metadata.data?.timeoutMs ?? connection.config.timeout,
    connection.config.timeout,
  );
  const result = await withSpan(
    `tools/call ${call.tool}`,
    {
      kind: SpanKind.CLIENT,
      attributes: {
        "mcp.method.name": "tools/call",
        "gen_ai.tool.name": call.tool,
        "gen_ai.operation.name": "execute_tool",
        "loom.mcp.server": call.server,
        ...(metadata.data === undefined
          ? {}
          : { "loom.run.id": metadata.data.runId, "loom.step.id": metadata.data.stepId }),
      },
    },
    () => connection.callTool(call.tool, call.arguments, timeoutMs),
  );
  if (result.isError === true) {
    throw new LoomError(ErrorCode.TOOL_ERROR, `${qualified} reported an error: ${resultText(result)}`);
  }
  deps.log.info(
    { tool: qualified, run_id: metadata.data?.runId, step_id: metadata.data?.stepId },
    "tool call done",
  );
  return {
    id: message.taskId ?? message.messageId,
    contextId: message.contextId ?? "",
    status: { state: TaskState.COMPLETED, timestamp: new Date().toISOString() },
    artifacts: [toolResultToArtifact(qualified, result)],
  };
}

function readToolCall(message: Message): ToolCall {
  const dataPart = message.parts.find((part) => "data" in part);
  if (dataPart === undefined || !("data" in dataPart)) {
    throw new LoomError(
      ErrorCode.INVALID_MESSAGE,
      "the task has no DataPart naming {server, tool, arguments}",
    );
  }
  const parsed = ToolCallSchema.safeParse(dataPart.data);
  if (!parsed.success) {
    throw new LoomError(
      ErrorCode.INVALID_MESSAGE,
      `the task's tool call is malformed: ${describeIssues(parsed.error.issues)}`,
    );
  }
  return parsed.data;
}
