import type { z } from "zod";
import { MessageSchema, TaskSchema } from "./a2a.ts";
import { PolicyDecisionRequestSchema, PolicyDecisionSchema } from "./policy.ts";

/** A request/reply pair on the bus: what the caller sends and what a successful reply holds. */
export interface RequestContract<Req extends z.ZodType = z.ZodType, Res extends z.ZodType = z.ZodType> {
  readonly request: Req;
  readonly response: Res;
}

export const PolicyDecideContract = {
  request: PolicyDecisionRequestSchema,
  response: PolicyDecisionSchema,
} as const satisfies RequestContract;

/** An A2A task handed to an agent: a Message in, the finished Task (with its artifacts) back. */
export const AgentTaskContract = {
  request: MessageSchema,
  response: TaskSchema,
} as const satisfies RequestContract;
