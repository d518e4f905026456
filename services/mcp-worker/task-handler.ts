import { type Message, type Task, TaskState } from "../../schemas/a2a.ts";
import type { ExecutedCall } from "../../schemas/audit.ts";
import { ErrorCode } from "../../schemas/errors.ts";
import { type ToolCall, ToolCallMetadataSchema, ToolCallSchema } from "../../schemas/mcp.ts";
import { IDEMPOTENCY_META_KEY, toolIdempotencyKey } from "../../schemas/steps.ts";
import type { GrantCheck } from "../kit/grant-check.ts";
import {
  activeTraceId,
  describeIssues,
  type JsonSchemaValidator,
  type Logger,
  LoomError,
  traceToolCall,
} from "../kit/index.ts";
import { resultText, toolResultToArtifact } from "./artifacts.ts";
import { safeToRepeat } from "./call-policy.ts";
import type { CallObserver } from "./observed-call.ts";
import type { ServerPool } from "./server-pool.ts";
import type { StepAttempt, StepResults } from "./step-results.ts";
import { TaskMasking } from "./task-masking.ts";
import type { TaskNotifications } from "./task-notifications.ts";

/** Extra lease on a step claim beyond the call's timeout, before another worker may take it over. */
const CLAIM_MARGIN_MS = 5_000;

export interface TaskHandlerDependencies {
  /** Each configured server, with its replicas, versions and resilience policies. */
  connections: ReadonlyMap<string, ServerPool>;
  steps: StepResults;
  validator: JsonSchemaValidator;
  log: Logger;
  grants: GrantCheck;
  /** Relays the server's progress and log messages for a task; absent, they are not relayed. */
  notifications?: TaskNotifications;
  calls: CallObserver;
}

/**
 * Serves one A2A task: its DataPart names a tool call; the reply is the finished Task. `executed`
 * is filled in with the call that went out, for the task's execution record.
 */
export async function handleToolTask(
  deps: TaskHandlerDependencies,
  message: Message,
  executed: ExecutedCall,
  signal?: AbortSignal,
): Promise<Task> {
  const call = readToolCall(message);
  const metadata = ToolCallMetadataSchema.safeParse(message.metadata ?? {});
  const step = metadata.data;
  // Before anything else: the bus is not trusted, only a grant for exactly this call is.
  const grant = await deps.grants.admit(message, step?.grant, {
    action: "tools.call",
    target: `${call.server}.${call.tool}`,
    arguments: call.arguments,
    runId: step?.runId,
    stepId: step?.stepId,
    attempt: step?.attempt ?? 0,
  });
  // Whatever leaves the worker about this task from here on, result or not, is masked as granted.
  const masking = new TaskMasking(grant.obligations);
  const connection = deps.connections.get(call.server);
  if (connection === undefined) {
    throw new LoomError(
      ErrorCode.UNKNOWN_SERVER,
      `no MCP server named "${call.server}" is configured on this worker`,
    );
  }
  const qualified = `${call.server}.${call.tool}`;
  const serverVersion = connection.chooseVersion();
  const tool = await connection.findTool(call.tool, serverVersion);
  if (tool === undefined) {
    throw new LoomError(ErrorCode.UNKNOWN_TOOL, `MCP server "${call.server}" has no tool "${call.tool}"`);
  }
  deps.validator.assertValid(tool.inputSchema, call.arguments, `arguments of ${qualified}`);

  const timeoutMs = Math.min(
    metadata.data?.timeoutMs ?? connection.config.timeout,
    connection.config.timeout,
  );
  // Retries fit in the step's own deadline, which its caller waits for.
  const budgetMs = metadata.data?.timeoutMs ?? timeoutMs;
  const idempotency =
    step === undefined ? {} : { [IDEMPOTENCY_META_KEY]: toolIdempotencyKey(step.runId, step.stepId) };
  const execute = async (): Promise<Task> => {
    const result = await traceToolCall(
      { server: call.server, tool: call.tool, runId: step?.runId, stepId: step?.stepId, serverVersion },
      async (traceMeta) =>
        (
          await connection.run(
            (replica, attemptTimeoutMs) =>
              masking
                .around(deps.calls.around(replica, executed, recordedVersion(connection, serverVersion)))
                .callTool(
                  call.tool,
                  call.arguments,
                  attemptTimeoutMs,
                  { ...traceMeta, ...idempotency },
                  signal,
                  deps.notifications?.observer(message, step, activeTraceId(), masking),
                  {
                    taskId: message.taskId,
                    runId: step?.runId,
                    stepId: step?.stepId,
                    // The grant is the call's only credential: follow-ups present it.
                    authorization: step?.grant,
                    principal: grant.sub,
                    clientRelay: step?.clientRelay,
                    masking,
                  },
                ),
            {
              version: serverVersion,
              timeoutMs,
              budgetMs,
              repeatable: safeToRepeat(idempotency, tool),
              signal,
            },
          )
        ).result,
    );
    if (result.isError === true) {
      throw new LoomError(ErrorCode.TOOL_ERROR, `${qualified} reported an error: ${resultText(result)}`);
    }
    if (tool.outputSchema !== undefined) {
      if (result.structuredContent === undefined) {
        throw new LoomError(
          ErrorCode.TOOL_OUTPUT_INVALID,
          `${qualified} declares an outputSchema but returned no structuredContent`,
        );
      }
      deps.validator.assertValid(
        tool.outputSchema,
        result.structuredContent,
        `structuredContent of ${qualified}`,
        ErrorCode.TOOL_OUTPUT_INVALID,
      );
    }
    // Every execution is in the audit trail; a log line per call is for debugging.
    deps.log.debug(
      { tool: qualified, run_id: metadata.data?.runId, step_id: metadata.data?.stepId },
      "tool call done",
    );
    return {
      id: message.taskId ?? message.messageId,
      contextId: message.contextId ?? "",
      status: { state: TaskState.COMPLETED, timestamp: new Date().toISOString() },
      artifacts: [
        {
          ...toolResultToArtifact(qualified, result),
          // Which version (A/B) served the call, for per-call records and `loom tools stats`.
          metadata: { serverVersion },
        },
      ],
    };
  };
  return runGrantedOnce(deps, message, { step, budgetMs, executed }, () => masking.outcome(execute));
}

/** A granted task's step attempt (none outside a workflow step), its deadline, and its note of how it was answered. */
export interface GrantedRun {
  step: StepAttempt | undefined;
  budgetMs: number;
  /** Marked `replayed` when the step ledger answers with a stored outcome, so nothing ran. */
  executed: ExecutedCall;
}

/**
 * Runs a task's granted work once. A step attempt's goes through its claim in the step ledger,
 * which records the grant's use in the same write and replays a stored outcome instead of a second
 * run (the task's record then says replay, not execution); a task outside a step first uses its
 * grant in KV `loom_grant_uses`.
 */
export async function runGrantedOnce(
  deps: Pick<TaskHandlerDependencies, "grants" | "steps">,
  message: Message,
  run: GrantedRun,
  work: () => Promise<Task>,
): Promise<Task> {
  if (run.step === undefined) {
    await deps.grants.consume(message);
    return work();
  }
  const options = {
    leaseMs: run.budgetMs + CLAIM_MARGIN_MS,
    grant: deps.grants.stepGrant(message),
    replayed: () => {
      run.executed.replayed = true;
    },
  };
  return deps.steps.once(run.step, options, work);
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

/**
 * The version name a call record carries: the one A/B routing chose, or none for a server without
 * `versions:`, whose records then name the version the server reports itself.
 */
export function recordedVersion(pool: ServerPool, version: string): string | undefined {
  return pool.config.versions === undefined ? undefined : version;
}
