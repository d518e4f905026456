import { randomUUID } from "node:crypto";
import {
  type CreateMessageRequest,
  type CreateMessageResult,
  McpError,
  ErrorCode as McpErrorCode,
} from "@modelcontextprotocol/sdk/types.js";
import type { NatsConnection } from "@nats-io/transport-node";
import { Role } from "../../schemas/a2a.ts";
import { AgentTaskContract } from "../../schemas/contracts.ts";
import { ErrorCode } from "../../schemas/errors.ts";
import { PolicyAction } from "../../schemas/policy.ts";
import {
  CreateMessageAnswerSchema,
  CreateMessageParamsSchema,
  type SamplingRequest,
  type SamplingTaskMetadata,
} from "../../schemas/sampling.ts";
import { agentTasksSubject, LLM_AGENT } from "../../schemas/subjects.ts";
import { authorize, describeIssues, type Logger, LoomError, request, toWireError } from "../kit/index.ts";
import type { CallOrigin } from "./server-requests.ts";

export interface SamplingRelayOptions {
  nc: NatsConnection;
  log: Logger;
  policyTimeoutMs: number;
  samplingTimeoutMs: number;
}

/** Policy's answers that reach the server as its own refusal (an MCP error naming the rule). */
const REFUSALS: ReadonlySet<string> = new Set([ErrorCode.POLICY_DENIED, ErrorCode.UNAUTHENTICATED]);

/**
 * A server's `sampling/createMessage` during a tool call: acp-policy decides `llm.sample` on that
 * server for the call's principal (its run token), and the request goes with the grant to the
 * `llm` agent, which checks the grant, answers and audits. A denial reaches the server as an MCP
 * error that names the rule.
 */
export async function relaySampling(
  options: SamplingRelayOptions,
  params: CreateMessageRequest["params"],
  origin: CallOrigin,
): Promise<CreateMessageResult> {
  const parsed = CreateMessageParamsSchema.safeParse(params);
  if (!parsed.success) {
    throw new McpError(
      McpErrorCode.InvalidParams,
      `Loom cannot relay this sampling request: ${describeIssues(parsed.error.issues)}`,
    );
  }
  if (params.tools !== undefined || params.toolChoice !== undefined) {
    throw new McpError(McpErrorCode.InvalidParams, "Loom's llm agent does not offer tools in sampling");
  }
  const sampling: SamplingRequest = { server: origin.server, params: parsed.data };
  const log = options.log.child({ mcp_server: origin.server, run_id: origin.runId, step_id: origin.stepId });
  try {
    const decision = await authorize(
      options.nc,
      {
        action: PolicyAction.LLM_SAMPLE,
        resource: { tool: origin.server },
        arguments: sampling,
        ...(origin.runId === undefined ? {} : { runId: origin.runId }),
        ...(origin.stepId === undefined ? {} : { stepId: origin.stepId }),
      },
      {
        authorization: origin.authorization,
        timeoutMs: options.policyTimeoutMs,
        what: `sampling through ${origin.server}`,
      },
    ).catch((refusal: unknown) => {
      if (!(refusal instanceof LoomError) || !REFUSALS.has(refusal.code)) throw refusal;
      log.warn({ rule: refusal.details?.rule }, "sampling request denied");
      throw new McpError(McpErrorCode.InvalidRequest, refusal.message, refusal.details);
    });
    const metadata: SamplingTaskMetadata = {
      ...(origin.runId === undefined ? {} : { runId: origin.runId }),
      ...(origin.stepId === undefined ? {} : { stepId: origin.stepId }),
      ...(decision.grant === undefined ? {} : { grant: decision.grant }),
    };
    const task = await request(
      options.nc,
      agentTasksSubject(LLM_AGENT),
      AgentTaskContract,
      {
        messageId: randomUUID(),
        role: Role.USER,
        ...(origin.taskId === undefined ? {} : { contextId: origin.taskId }),
        parts: [{ data: sampling }],
        metadata,
      },
      { timeoutMs: options.samplingTimeoutMs },
    );
    const part = task.artifacts?.[0]?.parts.find((candidate) => "data" in candidate);
    const answer = CreateMessageAnswerSchema.parse(
      part !== undefined && "data" in part ? part.data : undefined,
    );
    log.info({ model: answer.model }, "sampling request answered");
    return answer;
  } catch (error) {
    if (error instanceof McpError) throw error;
    const wire = toWireError(error);
    throw new McpError(McpErrorCode.InternalError, `Loom could not sample: ${wire.code}: ${wire.message}`);
  }
}
