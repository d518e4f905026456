/**
 * Tracing for the demo MCP servers, as the MCP semantic conventions describe it: the client's
 * trace context arrives in the request's `params._meta` (`traceparent`, `tracestate`), and each
 * `tools/call` is a SERVER span `tools/call <tool>` in that trace. The mcp-worker hands these
 * servers its OTEL_* settings, so their spans reach the same backend as Loom's.
 */
import type { RequestHandlerExtra } from "@modelcontextprotocol/sdk/shared/protocol.js";
import type { CallToolResult, ServerNotification, ServerRequest } from "@modelcontextprotocol/sdk/types.js";
import {
  contextFromFields,
  loadConfig,
  markFailed,
  SpanKind,
  setupTelemetry,
  TelemetryConfigSchema,
  withSpan,
} from "../kit/index.ts";

type Extra = RequestHandlerExtra<ServerRequest, ServerNotification>;

/** Sets up tracing for one demo server and flushes its spans when the worker stops it. */
export function traceServer(name: string): void {
  const telemetry = setupTelemetry({
    service: `mcp-${name}`,
    // No NATS here: spans go to the configured backend only.
    config: { ...loadConfig(TelemetryConfigSchema), LOOM_TRACE_STREAM: false },
  });
  const stop = () => void telemetry.shutdown().finally(() => process.exit(0));
  process.once("SIGTERM", stop);
  process.once("SIGINT", stop);
  process.stdin.once("end", stop);
}

/** Wraps a tool handler in its `tools/call <tool>` server span. */
export function tracedTool<Args>(
  tool: string,
  handler: (args: Args, extra: Extra) => Promise<CallToolResult>,
): (args: Args, extra: Extra) => Promise<CallToolResult> {
  return (args, extra) =>
    withSpan(
      `tools/call ${tool}`,
      {
        kind: SpanKind.SERVER,
        parent: contextFromFields(extra._meta),
        attributes: {
          "mcp.method.name": "tools/call",
          "gen_ai.tool.name": tool,
          "gen_ai.operation.name": "execute_tool",
          "jsonrpc.request.id": String(extra.requestId),
          "network.transport": "pipe",
        },
      },
      async (span) => {
        const result = await handler(args, extra);
        if (result.isError === true) markFailed(span, "tool_error", "the tool reported an error");
        return result;
      },
    );
}
