import { z } from "zod";
import { TaskArtifactUpdateEventSchema, TaskStateSchema, TaskStatusUpdateEventSchema } from "./a2a.ts";
import { WireErrorSchema } from "./errors.ts";
import { CONTEXT_ID_PATTERN } from "./memory.ts";
import { RequestedSchemaSchema } from "./sampling.ts";
import { RUN_ID_PATTERN } from "./subjects.ts";
import { WorkflowSchema } from "./workflow.ts";

export const RunIdSchema = z.string().regex(RUN_ID_PATTERN, "a run id is 1-128 letters, digits, - or _");

/** Published on `loom.v1.runs.submit`; the caller's token travels in the Authorization header. */
export const RunSubmissionSchema = z
  .object({
    runId: RunIdSchema,
    /**
     * A registered workflow id, or a whole definition sent inline. The orchestrator validates a
     * definition itself, so that an error names the offending field (INVALID_WORKFLOW).
     */
    workflow: z.union([z.string().min(1), z.record(z.string(), z.unknown())]),
    input: z.record(z.string(), z.unknown()).default({}),
    /** A2A context the run belongs to (runs that share one share `$memory`); a new one when absent. */
    contextId: z
      .string()
      .regex(CONTEXT_ID_PATTERN, "a context id is 1-128 letters, digits, - or _")
      .optional(),
    /**
     * A rerun (`loom.v1.runs.rerun` publishes it): the new run starts at step `from` of run
     * `runId`, with that run's definition, input and context, and the recorded results of its
     * steps before `from`. The submitter needs `runs.rerun` on that run as well as `workflow.start`.
     */
    rerunOf: z
      .object({ runId: RunIdSchema, from: z.string().min(1) })
      .strict()
      .optional(),
  })
  .strict();
export type RunSubmission = z.infer<typeof RunSubmissionSchema>;

/** When a step last started and ended (a step a `choice` loops back to keeps its latest visit). */
export const StepTimesSchema = z.object({
  startedAt: z.iso.datetime(),
  /** Absent while the step is under way or waits for an answer. */
  endedAt: z.iso.datetime().optional(),
});
export type StepTimes = z.infer<typeof StepTimesSchema>;

/** Where a rerun came from: the run, the step it started at, and the steps whose results it reused. */
export const RerunOfSchema = z.object({
  runId: RunIdSchema,
  from: z.string().min(1),
  reused: z.array(z.string()),
});
export type RerunOf = z.infer<typeof RerunOfSchema>;

/** How far a step's MCP request has come, as its server reported it (notifications/progress). */
export const StepProgressSchema = z.object({
  progress: z.number(),
  total: z.number().optional(),
  message: z.string().optional(),
});
export type StepProgress = z.infer<typeof StepProgressSchema>;

/** What Loom-specific detail a run event carries in its A2A `metadata`. */
export const RunEventMetadataSchema = z.object({
  stepId: z.string().optional(),
  call: z.string().optional(),
  attempt: z.number().int().optional(),
  /** For input-required: the roles that may answer. */
  roles: z.array(z.string()).optional(),
  /**
   * For an approval's input-required: its prompt rendered from the run's data with all personal data
   * masked first. A reader who may not see the run unmasked is shown this instead of the status text.
   */
  maskedText: z.string().optional(),
  /** For input-required by an MCP server's elicitation: its question and the answer's schema. */
  elicitation: z
    .object({ server: z.string(), message: z.string(), requestedSchema: RequestedSchemaSchema })
    .optional(),
  error: WireErrorSchema.optional(),
  progress: StepProgressSchema.optional(),
});
export type RunEventMetadata = z.infer<typeof RunEventMetadataSchema>;

/** One message on `loom.v1.runs.<runId>.events`: an A2A v1.0 StreamResponse. */
export const RunEventSchema = z.union([
  z
    .object({
      statusUpdate: TaskStatusUpdateEventSchema.extend({ metadata: RunEventMetadataSchema.optional() }),
    })
    .strict(),
  z.object({ artifactUpdate: TaskArtifactUpdateEventSchema }).strict(),
]);
export type RunEvent = z.infer<typeof RunEventSchema>;

/** A run's durable record in KV `loom_runs`, written with compare-and-set on its revision. */
export const RunRecordSchema = z.object({
  runId: RunIdSchema,
  contextId: z.string(),
  /** The workflow as the submission named it; `(inline)` or `(unreadable)` when it named none. */
  workflowId: z.string(),
  workflowVersion: z.number().int().optional(),
  /**
   * The definition the run started with, so a later version of the workflow does not change it.
   * Absent for a submission refused before any workflow was resolved.
   */
  definition: WorkflowSchema.optional(),
  /**
   * Where that definition is stored (`definition.<sha256>` in KV `loom_results`): a record in
   * `loom_runs` names it instead of carrying it, so a write per transition does not grow with it.
   */
  definitionRef: z.string().optional(),
  input: z.record(z.string(), z.unknown()),
  state: TaskStateSchema,
  /** `actor.getPersistedSnapshot()` after the last transition. */
  snapshot: z.unknown(),
  /** The principal (token subject) that started the run: rules may let it cancel its own runs. */
  startedBy: z.string().optional(),
  /**
   * W3C trace context (`traceparent`, `tracestate`) of the submission: every replica that drives
   * the run, after a crash or an approval too, puts its spans in this trace.
   */
  traceContext: z.record(z.string(), z.string()).optional(),
  output: z.unknown().optional(),
  error: WireErrorSchema.optional(),
  /** Effects under way (work, choices, approval prompts): a run with some needs a driver. */
  pending: z.array(z.string()).default([]),
  /** The orchestrator replica driving the run, until `leaseUntil`; absent while the run only waits. */
  owner: z.string().optional(),
  leaseUntil: z.iso.datetime().optional(),
  /** When each step that ran started and ended, by step id; absent in records made before timelines. */
  timeline: z.record(z.string(), StepTimesSchema).optional(),
  /** For a rerun: the run it reran and what it reused (`loom runs rerun`). */
  rerunOf: RerunOfSchema.optional(),
  /** The reruns of this run, oldest first. */
  rerunAs: z.array(RunIdSchema).optional(),
  /** When the workflow's deadline passes for this run. */
  deadlineAt: z.iso.datetime().optional(),
  createdAt: z.iso.datetime(),
  updatedAt: z.iso.datetime(),
});
export type RunRecord = z.infer<typeof RunRecordSchema>;

/** Sent on `loom.v1.runs.<runId>.input` to answer an approval; the answerer's token is in the header. */
export const RunInputSchema = z
  .object({
    /** The decision, for an approval (required there); passed on to a remote agent that asked. */
    approved: z.boolean().optional(),
    /** The step answered; may be left out when the run waits for exactly one. */
    stepId: z.string().optional(),
    comment: z.string().max(2_000).optional(),
    /** For a delegate step whose remote agent asked for input: the answer as text or data. */
    text: z.string().max(100_000).optional(),
    data: z.record(z.string(), z.unknown()).optional(),
  })
  .strict();
export type RunInput = z.infer<typeof RunInputSchema>;

export const RunCancelSchema = z.object({ reason: z.string().max(2_000).optional() }).strict();
export type RunCancel = z.infer<typeof RunCancelSchema>;

/** The reply to input or cancel: the run's state once the request was applied. */
export const RunControlReplySchema = z.object({ runId: RunIdSchema, state: TaskStateSchema });
export type RunControlReply = z.infer<typeof RunControlReplySchema>;
