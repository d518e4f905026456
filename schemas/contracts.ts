import type { z } from "zod";
import { MessageSchema, TaskSchema } from "./a2a.ts";
import {
  DevJwksReplySchema,
  DevJwksRequestSchema,
  DevTokenReplySchema,
  DevTokenRequestSchema,
} from "./dev-authorization.ts";
import { ServerRequestAnswerSchema, ServerRequestRelaySchema } from "./mcp-client-relay.ts";
import { PolicyDecisionRequestSchema, PolicyDecisionSchema, PolicyExplanationSchema } from "./policy.ts";
import {
  AuthenticateReplySchema,
  AuthenticateRequestSchema,
  PermittedReplySchema,
  PermittedRequestSchema,
  PolicyMasksReplySchema,
  PolicyMasksRequestSchema,
} from "./policy-gateway.ts";
import { RunCancelSchema, RunControlReplySchema, RunInputSchema } from "./run.ts";
import {
  MemoryReplySchema,
  MemoryRequestSchema,
  RunGetRequestSchema,
  RunListReplySchema,
  RunListRequestSchema,
  RunRerunReplySchema,
  RunRerunRequestSchema,
  RunViewSchema,
  RunWatchReplySchema,
  RunWatchRequestSchema,
} from "./run-read.ts";
import { ElicitAnswerForwardSchema, ElicitAnswerSchema, ElicitationRequestSchema } from "./sampling.ts";
import { TaskIntentSchema } from "./task-intent.ts";
import {
  FeedbackReplySchema,
  FeedbackRequestSchema,
  ToolStatsRequestSchema,
  ToolStatsSchema,
} from "./tool-calls.ts";
import {
  ServerListReplySchema,
  ServerListRequestSchema,
  ToolListReplySchema,
  ToolListRequestSchema,
} from "./tool-listing.ts";
import {
  WorkflowApplyReplySchema,
  WorkflowApplySchema,
  WorkflowGraphReplySchema,
  WorkflowGraphSchema,
  WorkflowListReplySchema,
  WorkflowListSchema,
  WorkflowShowReplySchema,
  WorkflowShowSchema,
} from "./workflow.ts";

/** A request/reply pair on the bus: what the caller sends and what a successful reply holds. */
export interface RequestContract<Req extends z.ZodType = z.ZodType, Res extends z.ZodType = z.ZodType> {
  readonly request: Req;
  readonly response: Res;
}

export const PolicyDecideContract = {
  request: PolicyDecisionRequestSchema,
  response: PolicyDecisionSchema,
} as const satisfies RequestContract;

export const PolicyExplainContract = {
  request: PolicyDecisionRequestSchema,
  response: PolicyExplanationSchema,
} as const satisfies RequestContract;

export const PolicyAuthenticateContract = {
  request: AuthenticateRequestSchema,
  response: AuthenticateReplySchema,
} as const satisfies RequestContract;

/** Dev mode only: a client-credentials token from the development issuer (see dev-authorization.ts). */
export const DevTokenContract = {
  request: DevTokenRequestSchema,
  response: DevTokenReplySchema,
} as const satisfies RequestContract;

/** Dev mode only: the development issuer's public keys. */
export const DevJwksContract = {
  request: DevJwksRequestSchema,
  response: DevJwksReplySchema,
} as const satisfies RequestContract;

export const PolicyMasksContract = {
  request: PolicyMasksRequestSchema,
  response: PolicyMasksReplySchema,
} as const satisfies RequestContract;

export const PolicyPermittedContract = {
  request: PermittedRequestSchema,
  response: PermittedReplySchema,
} as const satisfies RequestContract;

/** An A2A task handed to an agent: a Message in, the finished Task (with its artifacts) back. */
export const AgentTaskContract = {
  request: MessageSchema,
  response: TaskSchema,
} as const satisfies RequestContract;

/** A tool task's intent to acp-policy; the reply is the worker's finished Task, or a refusal. */
export const PolicyTaskContract = {
  request: TaskIntentSchema,
  response: TaskSchema,
} as const satisfies RequestContract;

export const RunInputContract = {
  request: RunInputSchema,
  response: RunControlReplySchema,
} as const satisfies RequestContract;

export const RunCancelContract = {
  request: RunCancelSchema,
  response: RunControlReplySchema,
} as const satisfies RequestContract;

export const RunGetContract = {
  request: RunGetRequestSchema,
  response: RunViewSchema,
} as const satisfies RequestContract;

export const RunRerunContract = {
  request: RunRerunRequestSchema,
  response: RunRerunReplySchema,
} as const satisfies RequestContract;

export const RunListContract = {
  request: RunListRequestSchema,
  response: RunListReplySchema,
} as const satisfies RequestContract;

export const RunWatchContract = {
  request: RunWatchRequestSchema,
  response: RunWatchReplySchema,
} as const satisfies RequestContract;

/** `loom.v1.memory.get` and `loom.v1.memory.clear` take the same request and reply. */
export const MemoryContract = {
  request: MemoryRequestSchema,
  response: MemoryReplySchema,
} as const satisfies RequestContract;

export const WorkflowApplyContract = {
  request: WorkflowApplySchema,
  response: WorkflowApplyReplySchema,
} as const satisfies RequestContract;

export const WorkflowGraphContract = {
  request: WorkflowGraphSchema,
  response: WorkflowGraphReplySchema,
} as const satisfies RequestContract;

export const WorkflowListContract = {
  request: WorkflowListSchema,
  response: WorkflowListReplySchema,
} as const satisfies RequestContract;

export const WorkflowShowContract = {
  request: WorkflowShowSchema,
  response: WorkflowShowReplySchema,
} as const satisfies RequestContract;

export const FeedbackContract = {
  request: FeedbackRequestSchema,
  response: FeedbackReplySchema,
} as const satisfies RequestContract;

export const ToolStatsContract = {
  request: ToolStatsRequestSchema,
  response: ToolStatsSchema,
} as const satisfies RequestContract;

export const ToolListContract = {
  request: ToolListRequestSchema,
  response: ToolListReplySchema,
} as const satisfies RequestContract;

export const ServerListContract = {
  request: ServerListRequestSchema,
  response: ServerListReplySchema,
} as const satisfies RequestContract;

/** The worker asks a run's user for input on an MCP server's behalf; the reply is the answer. */
export const RunElicitContract = {
  request: ElicitationRequestSchema,
  response: ElicitAnswerSchema,
} as const satisfies RequestContract;

/** An elicitation answer forwarded to the orchestrator driving the run; the reply is its state after. */
export const RunElicitAnswerContract = {
  request: ElicitAnswerForwardSchema,
  response: RunControlReplySchema,
} as const satisfies RequestContract;

/** A server's request during a gateway tool call, relayed to the gateway's client; the reply is its answer. */
export const ServerRequestRelayContract = {
  request: ServerRequestRelaySchema,
  response: ServerRequestAnswerSchema,
} as const satisfies RequestContract;
