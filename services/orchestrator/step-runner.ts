import { randomUUID } from "node:crypto";
import type { NatsConnection } from "@nats-io/transport-node";
import { Role } from "../../schemas/a2a.ts";
import { AgentTaskContract, PolicyDecideContract } from "../../schemas/contracts.ts";
import { ErrorCode } from "../../schemas/errors.ts";
import { splitToolName, type ToolCall, type ToolCallMetadata } from "../../schemas/mcp.ts";
import { PolicyAction, PolicyEffect } from "../../schemas/policy.ts";
import { agentTasksSubject, Headers, MCP_WORKER_AGENT, Subjects } from "../../schemas/subjects.ts";
import type { CallStep } from "../../schemas/workflow.ts";
import { LoomError, request, SpanKind, toWireError, withSpan } from "../kit/index.ts";
import { artifactValue } from "./artifact-value.ts";
import { type ExpressionScope, renderValue } from "./expressions.ts";
import type { RunMachineEvent } from "./run-machine.ts";

/** Extra time the worker gets over the tool's own timeout to answer with a typed error. */
const REPLY_MARGIN_MS = 2_000;

export interface StepRunnerOptions {
  nc: NatsConnection;
  policyTimeoutMs: number;
  stepTimeoutMs: number;
}

export interface StepRun {
  runId: string;
  contextId: string;
  authorization: string | undefined;
  step: CallStep;
  attempt: number;
  scope: ExpressionScope;
}

/**
 * Performs one `call` step: render its arguments, ask policy about this exact call, hand the A2A
 * task to the MCP worker. Every outcome, failures included, comes back as a machine event.
 */
export async function runCallStep(options: StepRunnerOptions, run: StepRun): Promise<RunMachineEvent> {
  const { step } = run;
  return withSpan(
    `step ${step.id}`,
    {
      kind: SpanKind.INTERNAL,
      attributes: { "loom.run.id": run.runId, "loom.step.id": step.id, "loom.step.attempt": run.attempt },
    },
    async (span) => {
      try {
        const args = await renderValue(step.with, run.scope, `step ${step.id}: with`);
        const decision = await request(
          options.nc,
          Subjects.POLICY_DECIDE,
          PolicyDecideContract,
          {
            action: PolicyAction.TOOLS_CALL,
            resource: { tool: step.call },
            runId: run.runId,
            stepId: step.id,
          },
          { timeoutMs: options.policyTimeoutMs, headers: { [Headers.AUTHORIZATION]: run.authorization } },
        );
        span.setAttributes({ "loom.policy.rule": decision.rule, "loom.policy.effect": decision.effect });
        if (decision.effect === PolicyEffect.DENY) {
          throw new LoomError(ErrorCode.POLICY_DENIED, `policy denied ${step.call}: ${decision.reason}`, {
            details: { rule: decision.rule, decisionId: decision.decisionId },
          });
        }
        const timeoutMs = step.timeout ?? options.stepTimeoutMs;
        const { server, tool } = splitToolName(step.call);
        const call: ToolCall = { server, tool, arguments: args as Record<string, unknown> };
        const metadata: ToolCallMetadata = { runId: run.runId, stepId: step.id, timeoutMs };
        const task = await request(
          options.nc,
          agentTasksSubject(MCP_WORKER_AGENT),
          AgentTaskContract,
          {
            messageId: randomUUID(),
            role: Role.USER,
            taskId: `${run.runId}:${step.id}:${run.attempt}`,
            contextId: run.contextId,
            parts: [{ data: call, mediaType: "application/json" }],
            metadata,
          },
          {
            timeoutMs: timeoutMs + REPLY_MARGIN_MS,
            headers: { [Headers.MSG_ID]: `${run.runId}:${step.id}:${run.attempt}` },
          },
        );
        return { type: "STEP.SUCCEEDED", stepId: step.id, result: artifactValue(task.artifacts?.[0]) };
      } catch (error) {
        return { type: "STEP.FAILED", stepId: step.id, error: toWireError(error) };
      }
    },
  );
}
