import { z } from "zod";
import { MessageSchema } from "./a2a.ts";
import { PolicyDecisionRequestSchema } from "./policy.ts";

/**
 * A tool task on its way to the mcp-worker through acp-policy (`loom.v1.policy.tasks[.run]`): the
 * decision to ask for, and the A2A task to forward on allow. acp-policy binds the task to the
 * decision: it sets the task's run, step, attempt and grant from what it decided, so a task that
 * names other arguments or another target than the decision is refused by the worker's grant check.
 */
export const TaskIntentSchema = z.object({
  decision: PolicyDecisionRequestSchema,
  task: MessageSchema,
});
export type TaskIntent = z.infer<typeof TaskIntentSchema>;
