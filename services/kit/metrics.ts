import { Counter, collectDefaultMetrics, Gauge, Histogram, type Metric, Registry } from "prom-client";
import { DEFAULT_SERVER_VERSION } from "../../schemas/mcp-resilience.ts";

/**
 * The Prometheus metrics a service serves on `/metrics`. Each metric joins the registry the first
 * time it is recorded, so a service shows only the families it actually produces (the worker has
 * no policy decisions, say), plus the Node.js process metrics.
 */
export const registry = new Registry();
collectDefaultMetrics({ register: registry });

function recorded<M extends Metric>(metric: M): M {
  const name = (metric as unknown as { name: string }).name;
  if (registry.getSingleMetric(name) === undefined) registry.registerMetric(metric);
  return metric;
}

/** Tool-call latency buckets in seconds: a local stdio call takes ~1 ms, a remote one seconds. */
const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

const toolCalls = new Counter({
  name: "loom_tool_calls_total",
  help: "MCP tool calls made by the mcp-worker, by server, tool, outcome (ok, or the error code) and server version",
  labelNames: ["server", "tool", "outcome", "server_version"] as const,
  registers: [],
});
const toolCallDuration = new Histogram({
  name: "loom_tool_call_duration_seconds",
  help: "Time from sending an MCP tools/call to its result, by server, tool, outcome and server version",
  labelNames: ["server", "tool", "outcome", "server_version"] as const,
  buckets: LATENCY_BUCKETS,
  registers: [],
});
/** `mcp.client.operation.duration` of the MCP semantic conventions, in Prometheus naming. */
const mcpClientOperationDuration = new Histogram({
  name: "mcp_client_operation_duration_seconds",
  help: "mcp.client.operation.duration: duration of an MCP request as the client sees it",
  labelNames: ["mcp_method_name", "gen_ai_tool_name", "gen_ai_operation_name", "error_type"] as const,
  buckets: LATENCY_BUCKETS,
  registers: [],
});

/** Records one finished MCP tools/call. `errorType` is absent for a call that succeeded. */
export function recordToolCall(call: {
  server: string;
  tool: string;
  seconds: number;
  errorType?: string;
  /** The version of the server (A/B) that served the call; `default` without a `versions:` block. */
  serverVersion?: string | undefined;
}): void {
  const outcome = call.errorType ?? "ok";
  const labels = {
    server: call.server,
    tool: call.tool,
    outcome,
    server_version: call.serverVersion ?? DEFAULT_SERVER_VERSION,
  };
  recorded(toolCalls).inc(labels);
  recorded(toolCallDuration).observe(labels, call.seconds);
  recorded(mcpClientOperationDuration).observe(
    {
      mcp_method_name: "tools/call",
      gen_ai_tool_name: call.tool,
      gen_ai_operation_name: "execute_tool",
      error_type: call.errorType ?? "",
    },
    call.seconds,
  );
}

const policyDecisions = new Counter({
  name: "loom_policy_decisions_total",
  help: "Policy decisions by action, effect (allow, deny) and the rule that decided",
  labelNames: ["action", "effect", "rule"] as const,
  registers: [],
});
const policyDecisionDuration = new Histogram({
  name: "loom_policy_decision_duration_seconds",
  help: "Time acp-policy took to decide and audit one request, by effect",
  labelNames: ["effect"] as const,
  buckets: LATENCY_BUCKETS,
  registers: [],
});

export function recordPolicyDecision(decision: {
  action: string;
  effect: string;
  rule: string;
  seconds: number;
}): void {
  recorded(policyDecisions).inc({ action: decision.action, effect: decision.effect, rule: decision.rule });
  recorded(policyDecisionDuration).observe({ effect: decision.effect }, decision.seconds);
}

const runStates = new Counter({
  name: "loom_runs_total",
  help: "Runs that entered each state (submitted, working, completed, failed, rejected, canceled, input-required)",
  labelNames: ["state"] as const,
  registers: [],
});

/** Counts a run entering `state` (each run counts once per state it enters). */
export function recordRunState(state: string): void {
  recorded(runStates).inc({ state });
}

/** A gauge read when scraped, for values a service already knows (runs it is driving, say). */
export function observeGauge(name: string, help: string, read: () => number): void {
  if (registry.getSingleMetric(name) !== undefined) return;
  recorded(
    new Gauge({
      name,
      help,
      registers: [],
      collect() {
        this.set(read());
      },
    }),
  );
}

const natsStatus = new Counter({
  name: "loom_nats_connection_events_total",
  help: "NATS connection events since start: connect, disconnect, reconnect, error",
  labelNames: ["event"] as const,
  registers: [],
});

export function recordNatsStatus(event: string): void {
  recorded(natsStatus).inc({ event });
}
