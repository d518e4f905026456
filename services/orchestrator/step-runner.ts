import { randomUUID } from "node:crypto";
import type { NatsConnection } from "@nats-io/transport-node";
import { type Message, Role } from "../../schemas/a2a.ts";
import { AgentTaskContract } from "../../schemas/contracts.ts";
import { ErrorCode } from "../../schemas/errors.ts";
import { type McpOperation, splitToolName, type ToolCallMetadata } from "../../schemas/mcp.ts";
import type { PolicyAction } from "../../schemas/policy.ts";
import type { StepProgress } from "../../schemas/run.ts";
import { agentCancelSubject, agentTasksSubject, Headers, MCP_WORKER_AGENT } from "../../schemas/subjects.ts";
import type { DelegateStep, WorkStep } from "../../schemas/workflow.ts";
import {
  encodeJson,
  type Logger,
  LoomError,
  type MuxedRequests,
  request,
  SpanKind,
  sendToolTask,
  toWireError,
  tracedHeaders,
  withSpan,
} from "../kit/index.ts";
import { PausableDeadline } from "../kit/pausable-deadline.ts";
import { delegateMessageId } from "./a2a/idempotent-ids.ts";
import type { RemoteAgents } from "./a2a/remote-agents.ts";
import { artifactValue } from "./artifact-value.ts";
import { type ExpressionScope, renderValue } from "./expressions.ts";

import type { InputAnswer, RunMachineEvent } from "./run-machine.ts";
import type { RunTokens } from "./run-tokens.ts";
import { progressText, type TaskProgressFeed } from "./task-progress.ts";

/** Extra time an agent gets over the step's own timeout to answer with a typed error. */
const REPLY_MARGIN_MS = 2_000;

export interface StepRunnerOptions {
  nc: NatsConnection;
  policyTimeoutMs: number;
  stepTimeoutMs: number;
  remoteAgents: RemoteAgents;
  log: Logger;
  /**
   * The most a step's task may take beyond its timeout, in all, while people answer questions its
   * MCP server asked (elicitation); the step's own clock stops meanwhile.
   */
  elicitationTimeoutMs: number;
  /** Where each run's run token is kept; only this service reads it. */
  runTokens: RunTokens;
  /** The progress of this process's tasks, heard on one subscription. */
  progress: TaskProgressFeed;
  /** Where the worker answers tool steps' tasks: one subscription for them all. */
  toolTasks: MuxedRequests;
}

export interface WorkRun {
  runId: string;
  contextId: string;
  /** The run's workflow and version, which its run token is bound to. */
  workflow: { id: string; version: number };
  step: WorkStep;
  attempt: number;
  scope: ExpressionScope;
  signal: AbortSignal;
  /** For a delegate step answering its remote agent: the remote task and the answer. */
  followUp?: { remoteTaskId: string; answer: InputAnswer } | undefined;
  /**
   * Progress worth telling the run's watchers: a remote agent's status updates, or an MCP
   * server's progress reports (then with `progress`).
   */
  onProgress?: (text: string, progress?: StepProgress) => Promise<void>;
  /** Handed the deadline of the task sent, so the run can stop its clock while a person answers. */
  onDeadline?: (deadline: PausableDeadline) => void;
  /**
   * Called just before the task goes out, in the same turn: what it publishes (the step's start,
   * told to the run's watchers) leaves in the same socket write as the task.
   */
  onSend?: () => void;
}

/** What one work step asks of which agent, and which policy action covers it. */
interface Dispatch {
  agent: string;
  /** `delegate` goes to another agent, which applies its own policy to the caller's token. */
  action: PolicyAction | "delegate";
  /** What policy decides about: `<server>.<tool>`, `<server>.<prompt>` or `<server>.<uri>`. */
  target: string;
  arguments?: Record<string, unknown>;
  part: Message["parts"][number];
}

/**
 * Performs one work step: render its inputs and send its A2A task, through acp-policy (which
 * decides about this exact operation and forwards the granted task to the worker) or, for a
 * delegate, straight to its agent. Every outcome, failures included, comes back as a machine event.
 */
export async function runWorkStep(options: StepRunnerOptions, run: WorkRun): Promise<RunMachineEvent> {
  const { step } = run;
  return withSpan(
    `step ${step.id}`,
    {
      kind: SpanKind.INTERNAL,
      attributes: { "loom.run.id": run.runId, "loom.step.id": step.id, "loom.step.attempt": run.attempt },
    },
    async () => {
      try {
        if ("delegate" in step && step.delegate.url !== undefined)
          return await runRemote(options, run, step.delegate.url);
        return await sendTask(options, run, await describeDispatch(step, run.scope));
      } catch (error) {
        return { type: "STEP.FAILED", stepId: step.id, error: toWireError(error) };
      }
    },
  );
}

async function sendTask(
  options: StepRunnerOptions,
  run: WorkRun,
  dispatch: Dispatch,
): Promise<RunMachineEvent> {
  const { step } = run;
  const timeoutMs = step.timeout ?? options.stepTimeoutMs;
  const taskId = `${run.runId}:${step.id}:${run.attempt}`;
  const metadata: ToolCallMetadata = { runId: run.runId, stepId: step.id, attempt: run.attempt, timeoutMs };
  // The run token goes to acp-policy (a tool task) or to a workflow agent (this same service,
  // another replica perhaps), which decides the child run it starts with it; never to the worker.
  const authorization = await options.runTokens.authorization(run.runId);
  const cancel = () =>
    options.nc.publish(agentCancelSubject(dispatch.agent), encodeJson({ taskId }), {
      headers: tracedHeaders(
        dispatch.agent === MCP_WORKER_AGENT ? {} : { [Headers.AUTHORIZATION]: authorization },
      ),
    });
  run.signal.addEventListener("abort", cancel, { once: true });
  // Followed before the task goes out, so no report the worker sends is missed. Only the MCP
  // worker reports progress on a task's notifications subject.
  const onProgress = run.onProgress;
  const progress =
    dispatch.agent === MCP_WORKER_AGENT && onProgress !== undefined
      ? options.progress.follow(taskId, (reported) => onProgress(progressText(step.id, reported), reported))
      : undefined;
  const replyWithinMs = timeoutMs + REPLY_MARGIN_MS;
  const deadline = new PausableDeadline(
    replyWithinMs,
    () => new LoomError(ErrorCode.TIMEOUT, `no reply to step ${step.id}'s task within ${replyWithinMs} ms`),
  );
  run.onDeadline?.(deadline);
  const expired = new Promise<never>((_resolve, reject) =>
    deadline.signal.addEventListener("abort", () => reject(deadline.signal.reason), { once: true }),
  );
  const task = {
    messageId: randomUUID(),
    role: Role.USER,
    taskId,
    contextId: run.contextId,
    parts: [dispatch.part],
    metadata,
  };
  // The deadline above is the step's clock; this bound holds while it is paused.
  const boundMs = replyWithinMs + options.elicitationTimeoutMs;
  try {
    run.onSend?.();
    const sent =
      dispatch.action === "delegate"
        ? request(options.nc, agentTasksSubject(dispatch.agent), AgentTaskContract, task, {
            timeoutMs: boundMs,
            headers: { [Headers.MSG_ID]: taskId, [Headers.AUTHORIZATION]: authorization },
          })
        : sendToolTask(
            options.nc,
            {
              decision: {
                action: dispatch.action,
                resource: { tool: dispatch.target },
                ...(dispatch.arguments === undefined ? {} : { arguments: dispatch.arguments }),
                runId: run.runId,
                stepId: step.id,
                attempt: run.attempt,
                runWorkflow: run.workflow,
              },
              task,
            },
            {
              authorization,
              channel: "run",
              timeoutMs: boundMs + options.policyTimeoutMs,
              inbox: options.toolTasks,
            },
          );
    const answer = await Promise.race([sent, expired]);
    return { type: "STEP.SUCCEEDED", stepId: step.id, result: artifactValue(answer.artifacts?.[0]) };
  } finally {
    deadline.clear();
    run.signal.removeEventListener("abort", cancel);
    await progress?.stop();
  }
}

/** Renders a step's inputs into the A2A DataPart (or TextPart) its agent takes. */
async function describeDispatch(step: WorkStep, scope: ExpressionScope): Promise<Dispatch> {
  if ("call" in step) {
    const { server, tool } = splitToolName(step.call);
    const args = (await renderValue(step.with, scope, `step ${step.id}: with`)) as Record<string, unknown>;
    const operation: McpOperation = { server, tool, arguments: args };
    return {
      agent: MCP_WORKER_AGENT,
      action: "tools.call",
      target: step.call,
      arguments: args,
      part: { data: operation },
    };
  }
  if ("prompt" in step) {
    const { server, tool: prompt } = splitToolName(step.prompt);
    const rendered = (await renderValue(step.with, scope, `step ${step.id}: with`)) as Record<
      string,
      unknown
    >;
    // MCP prompt arguments are strings.
    const args = Object.fromEntries(
      Object.entries(rendered).map(([key, value]) => [
        key,
        typeof value === "string" ? value : JSON.stringify(value),
      ]),
    );
    const operation: McpOperation = { server, prompt, arguments: args };
    return {
      agent: MCP_WORKER_AGENT,
      action: "prompts.get",
      target: step.prompt,
      arguments: args,
      part: { data: operation },
    };
  }
  if ("read" in step) {
    const { server, uri } = await resolveResource(step.read, scope, step.id);
    const operation: McpOperation = { server, resource: uri };
    return {
      agent: MCP_WORKER_AGENT,
      action: "resources.read",
      target: `${server}.${uri}`,
      part: { data: operation },
    };
  }
  const agent = step.delegate.agent ?? "";
  return { agent, action: "delegate", target: agent, part: await delegatePart(step, scope) };
}

async function delegatePart(step: DelegateStep, scope: ExpressionScope): Promise<Message["parts"][number]> {
  const message = await renderValue(step.delegate.message, scope, `step ${step.id}: delegate.message`);
  return typeof message === "string" ? { text: message } : { data: message ?? {} };
}

/** A `delegate: {url}` step: the task goes to an external A2A agent over HTTP, not on the bus. */
async function runRemote(options: StepRunnerOptions, run: WorkRun, url: string): Promise<RunMachineEvent> {
  const { step } = run;
  if (!("delegate" in step)) throw new Error("runRemote takes delegate steps only");
  const timeout = AbortSignal.timeout(step.timeout ?? options.stepTimeoutMs);
  const part = await delegatePart(step, run.scope);
  run.onSend?.();
  const outcome = await options.remoteAgents.run({
    url,
    messageId: delegateMessageId(run.runId, step.id, run.attempt),
    skill: step.delegate.skill,
    part,
    followUp:
      run.followUp === undefined
        ? undefined
        : { remoteTaskId: run.followUp.remoteTaskId, part: answerPart(run.followUp.answer) },
    signal: AbortSignal.any([run.signal, timeout]),
    onStatus: (text) => run.onProgress?.(`step ${step.id}: remote agent ${text}`) ?? Promise.resolve(),
  });
  if (outcome.kind === "input-required") {
    return {
      type: "STEP.INPUT_REQUIRED",
      stepId: step.id,
      prompt: outcome.prompt,
      remoteTaskId: outcome.remoteTaskId,
    };
  }
  return { type: "STEP.SUCCEEDED", stepId: step.id, result: outcome.value };
}

/** An answer as the A2A part a remote agent reads: its data, its decision, or its text. */
function answerPart(answer: InputAnswer): Message["parts"][number] {
  if (answer.data !== undefined) return { data: answer.data };
  if (answer.approved !== undefined)
    return {
      data: { approved: answer.approved, ...(answer.text === undefined ? {} : { comment: answer.text }) },
    };
  return { text: answer.text ?? "" };
}

/** `mcp://crm/contacts/c-1` reads `crm://contacts/c-1` from server `crm`. */
async function resolveResource(
  read: WorkStep extends infer S ? (S extends { read: infer R } ? R : never) : never,
  scope: ExpressionScope,
  stepId: string,
): Promise<{ server: string; uri: string }> {
  if (typeof read !== "string") {
    return {
      server: read.server,
      uri: String(await renderValue(read.uri, scope, `step ${stepId}: read.uri`)),
    };
  }
  const rendered = String(await renderValue(read, scope, `step ${stepId}: read`));
  const match = /^mcp:\/\/([a-z0-9][a-z0-9_-]*)\/(.+)$/i.exec(rendered);
  if (match === null) {
    throw new LoomError(
      ErrorCode.INVALID_INPUT,
      `step ${stepId}: "${rendered}" is not an mcp://<server>/<path> URI`,
    );
  }
  const [, server = "", path = ""] = match;
  return { server, uri: `${server}://${path}` };
}
