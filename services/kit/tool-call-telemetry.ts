import { recordToolCall } from "./metrics.ts";
import { errorType, markFailed, SpanKind, traceContextFields, withSpan } from "./telemetry.ts";

/** The `error.type` the MCP semantic conventions give a result with `isError: true`. */
export const TOOL_ERROR_TYPE = "tool_error";

export interface ToolCallTarget {
  server: string;
  tool: string;
  runId?: string | undefined;
  stepId?: string | undefined;
  /** The server version (A/B) the call goes to: a span attribute and a metrics label. */
  serverVersion?: string | undefined;
}

/**
 * Makes one MCP `tools/call` observable: a CLIENT span `tools/call <tool>` with the MCP and GenAI
 * semantic-convention attributes, the span's context handed to `perform` as `_meta` fields for
 * the request (so the server's span joins the trace), and the call counted and timed in the
 * `loom_tool_call*` and `mcp_client_operation_duration_seconds` metrics.
 */
export function traceToolCall<Result extends { isError?: boolean | undefined }>(
  target: ToolCallTarget,
  perform: (meta: Record<string, string>) => Promise<Result>,
): Promise<Result> {
  return withSpan(
    `tools/call ${target.tool}`,
    {
      kind: SpanKind.CLIENT,
      attributes: {
        "mcp.method.name": "tools/call",
        "gen_ai.tool.name": target.tool,
        "gen_ai.operation.name": "execute_tool",
        "loom.mcp.server": target.server,
        ...(target.runId === undefined ? {} : { "loom.run.id": target.runId }),
        ...(target.stepId === undefined ? {} : { "loom.step.id": target.stepId }),
        ...(target.serverVersion === undefined ? {} : { "loom.mcp.server.version": target.serverVersion }),
      },
    },
    async (span) => {
      const started = performance.now();
      const seconds = () => (performance.now() - started) / 1000;
      let result: Result;
      try {
        result = await perform(traceContextFields());
      } catch (error) {
        recordToolCall({ ...target, seconds: seconds(), errorType: errorType(error) });
        throw error;
      }
      if (result.isError === true) {
        markFailed(span, TOOL_ERROR_TYPE, `${target.server}.${target.tool} reported an error`);
      }
      recordToolCall({
        ...target,
        seconds: seconds(),
        ...(result.isError === true ? { errorType: TOOL_ERROR_TYPE } : {}),
      });
      return result;
    },
  );
}
