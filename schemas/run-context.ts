import { z } from "zod";
import { WireErrorSchema } from "./errors.ts";
import { RequestedSchemaSchema } from "./sampling.ts";

/** What a person answers a run that waits for input: a decision, text, or structured data. */
export const InputAnswerSchema = z.object({
  approved: z.boolean().optional(),
  text: z.string().optional(),
  data: z.record(z.string(), z.unknown()).optional(),
  by: z.string(),
});
export type InputAnswer = z.infer<typeof InputAnswerSchema>;

/** A delegate step's remote agent asked for input: its prompt and task, then the answer to send it. */
export const RemoteInputSchema = z.object({
  prompt: z.string(),
  remoteTaskId: z.string(),
  answer: InputAnswerSchema.optional(),
});
export type RemoteInput = z.infer<typeof RemoteInputSchema>;

/** An MCP server's open question during a step's tool call, and where its answer goes. */
export const PendingElicitationSchema = z.object({
  server: z.string(),
  message: z.string(),
  requestedSchema: RequestedSchemaSchema,
  /** The dispatch of the step that asked: a question of an earlier attempt is no longer open. */
  attempt: z.number().int(),
  /** The worker's NATS reply subject, waiting for the answer. */
  reply: z.string(),
});
export type PendingElicitation = z.infer<typeof PendingElicitationSchema>;

const counts = z.record(z.string(), z.number().int().nonnegative());

/**
 * Everything a run knows, persisted in its XState snapshot in KV `loom_runs`; parsed when a run is
 * restored, so a record written by another version or edited by hand fails typed, not half-way
 * through a step. Holds results (or references to stored ones), never in-flight promises.
 */
export const RunContextSchema = z.object({
  input: z.record(z.string(), z.unknown()),
  /** Results by step name (`as`, else the step id). */
  steps: z.record(z.string(), z.unknown()),
  /** Dispatches of each work step so far, across retries and revisits: part of its idempotency key. */
  attempts: counts,
  /** Attempts in the current visit of each work step, for its retry limit. */
  tries: counts,
  /** Entries into each work step: a step a `choice` loops back to is a new piece of work. */
  visits: counts,
  /** Prompts of approvals being waited for, by step id. */
  approvals: z.record(z.string(), z.string()),
  /**
   * The same prompts rendered from the run's data with every kind of personal data masked first,
   * by step id: what a reader who may not see the run unmasked is shown. Absent in snapshots made
   * before prompts were rendered twice (such a reader is then shown no prompt).
   */
  maskedApprovals: z.record(z.string(), z.string()).optional(),
  /** Absent in snapshots made before remote input existed. */
  remoteInputs: z.record(z.string(), RemoteInputSchema).optional(),
  /** Questions an MCP server asked during a step's tool call, by step id, until someone answers. */
  elicitations: z.record(z.string(), PendingElicitationSchema).optional(),
  output: z.unknown().optional(),
  error: WireErrorSchema.optional(),
});
export type RunContext = z.infer<typeof RunContextSchema>;
