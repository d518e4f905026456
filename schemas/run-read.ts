import { z } from "zod";
import { TaskStateSchema } from "./a2a.ts";
import { WireErrorSchema } from "./errors.ts";
import { CONTEXT_ID_PATTERN, MemoryEntrySchema } from "./memory.ts";
import { RerunOfSchema, RunEventSchema, RunIdSchema, RunRecordSchema } from "./run.ts";
import { RequestedSchemaSchema } from "./sampling.ts";
import { STEP_KINDS } from "./workflow.ts";

/** Where a step of a run stands. */
export const StepStatus = {
  /** Not reached yet; the run is still going. */
  PENDING: "pending",
  RUNNING: "running",
  /** Waits for someone's answer: an approval, an MCP server's question, a remote agent's. */
  WAITING: "waiting",
  COMPLETED: "completed",
  FAILED: "failed",
  /** Under way when the run was canceled, expired or failed elsewhere (a sibling branch). */
  CANCELED: "canceled",
  /** Not reached: the run ended before it, or a choice went around it. */
  SKIPPED: "skipped",
} as const;
export type StepStatus = (typeof StepStatus)[keyof typeof StepStatus];

/** One step of a run's timeline, in the workflow's order (branches and compensations after their step). */
export const StepViewSchema = z
  .object({
    stepId: z.string(),
    kind: z.enum(STEP_KINDS),
    /** What it calls, reads, renders or delegates to (`crm.get_contact`, a URI, an agent). */
    target: z.string().optional(),
    /** The parallel step a branch belongs to, or the step a compensation step compensates. */
    parent: z.string().optional(),
    state: z.enum(StepStatus),
    /** Dispatches of the step (retries and revisits included); 0 for a step that does no work. */
    attempts: z.number().int().min(0),
    startedAt: z.iso.datetime().optional(),
    endedAt: z.iso.datetime().optional(),
    /** From start to end, for a step that ended. */
    durationMs: z.number().int().min(0).optional(),
    /** The step's last error, masked for the reader. */
    error: WireErrorSchema.optional(),
    /** For a rerun: the run whose recorded result this step reused instead of running again. */
    reusedFrom: RunIdSchema.optional(),
  })
  .strict();
export type StepView = z.infer<typeof StepViewSchema>;

export const WaitingKind = {
  APPROVAL: "approval",
  /** An MCP server asked a question during the step's tool call (elicitation). */
  ELICITATION: "elicitation",
  /** A delegate step's remote agent asked for input. */
  REMOTE_INPUT: "remote-input",
} as const;
export type WaitingKind = (typeof WaitingKind)[keyof typeof WaitingKind];

/** What a waiting run asks, and who may answer it (`loom approve` / `loom runs input`). */
export const WaitingInputSchema = z
  .object({
    stepId: z.string(),
    kind: z.enum(WaitingKind),
    /** The question, masked for the reader. */
    prompt: z.string(),
    /** For an elicitation: the server that asks, and the shape of the answer it wants. */
    server: z.string().optional(),
    requestedSchema: RequestedSchemaSchema.optional(),
    /**
     * For an approval: the roles it names, one of which the answerer must hold. Empty for other
     * questions: whoever policy lets answer (`runs.approve`) may.
     */
    roles: z.array(z.string()),
    /** Whether the reader may answer it: policy allows them `runs.approve` (and holds a role named). */
    callerMayAnswer: z.boolean(),
  })
  .strict();
export type WaitingInput = z.infer<typeof WaitingInputSchema>;

/**
 * What a reader sees of a run (`loom.v1.runs.get`): its record without the machine's snapshot, the
 * definition or the credentials it runs with, and masked as policy asks for that reader; each step
 * as a timeline, and what a waiting run asks.
 */
export const RunViewSchema = RunRecordSchema.pick({
  runId: true,
  contextId: true,
  workflowId: true,
  workflowVersion: true,
  input: true,
  state: true,
  startedBy: true,
  traceContext: true,
  output: true,
  error: true,
  deadlineAt: true,
  rerunOf: true,
  rerunAs: true,
  createdAt: true,
  updatedAt: true,
}).extend({
  steps: z.array(StepViewSchema),
  /** Empty unless the run is input-required. */
  waiting: z.array(WaitingInputSchema),
});
export type RunView = z.infer<typeof RunViewSchema>;

/** A run in a listing: what identifies it and where it stands, no data. */
export const RunSummarySchema = RunViewSchema.pick({
  runId: true,
  contextId: true,
  workflowId: true,
  workflowVersion: true,
  state: true,
  startedBy: true,
  createdAt: true,
  updatedAt: true,
});
export type RunSummary = z.infer<typeof RunSummarySchema>;

/** Sent on `loom.v1.runs.get` with the reader's token in the Authorization header. */
export const RunGetRequestSchema = z.object({ runId: RunIdSchema }).strict();

/** Sent on `loom.v1.runs.rerun` with the caller's token in the Authorization header. */
export const RunRerunRequestSchema = z
  .object({
    runId: RunIdSchema,
    /**
     * The top-level step to start again at: the steps before it keep their recorded results. By
     * default the first step that did not complete (where the run stopped).
     */
    from: z.string().min(1).optional(),
  })
  .strict();
export type RunRerunRequest = z.infer<typeof RunRerunRequestSchema>;

/** The new run, submitted: follow it with `loom runs events <runId> --follow`. */
export const RunRerunReplySchema = z.object({ runId: RunIdSchema, rerunOf: RerunOfSchema });
export type RunRerunReply = z.infer<typeof RunRerunReplySchema>;

/** Most runs one page of `loom.v1.runs.list` holds. */
export const MAX_RUNS_PAGE = 100;

/**
 * Sent on `loom.v1.runs.list`: the runs the caller may read (`runs.read`), newest update first,
 * narrowed by every filter given.
 */
export const RunListRequestSchema = z
  .object({
    state: TaskStateSchema.optional(),
    workflow: z.string().min(1).optional(),
    contextId: z.string().min(1).optional(),
    /** Only runs updated at or after this instant. */
    since: z.iso.datetime().optional(),
    limit: z.number().int().min(1).max(MAX_RUNS_PAGE).default(50),
    /** The `nextCursor` of the previous page. */
    cursor: z.string().regex(/^\d+$/, "a cursor is the nextCursor of an earlier page").optional(),
  })
  .strict();
export type RunListRequest = z.input<typeof RunListRequestSchema>;

export const RunListReplySchema = z.object({
  runs: z.array(RunSummarySchema),
  /** How many runs the caller may read that match the filters, on every page. */
  total: z.number().int().min(0),
  /** Absent on the last page. */
  nextCursor: z.string().optional(),
});
export type RunListReply = z.infer<typeof RunListReplySchema>;

/** Longest a `loom.v1.runs.watch` request waits for a first new event. */
export const MAX_WATCH_WAIT_MS = 20_000;

/**
 * Sent on `loom.v1.runs.watch` (a long poll): the run's events stored after `afterSequence`, as
 * soon as there is at least one, or none once `waitMs` passes. The caller asks again from the
 * reply's `lastSequence` until an event ends the run.
 */
export const RunWatchRequestSchema = z
  .object({
    runId: RunIdSchema,
    afterSequence: z.number().int().min(0).default(0),
    waitMs: z.number().int().min(0).max(MAX_WATCH_WAIT_MS).default(10_000),
  })
  .strict();
export type RunWatchRequest = z.input<typeof RunWatchRequestSchema>;

export const RunWatchReplySchema = z.object({
  /** The events, masked for the reader. */
  events: z.array(RunEventSchema),
  /** The stream sequence to ask after next time (unchanged when no event came). */
  lastSequence: z.number().int().min(0),
});
export type RunWatchReply = z.infer<typeof RunWatchReplySchema>;

/** Sent on `loom.v1.memory.get` and `loom.v1.memory.clear`. */
export const MemoryRequestSchema = z
  .object({ contextId: z.string().regex(CONTEXT_ID_PATTERN, "a contextId is 1-128 letters, digits, - or _") })
  .strict();

export const MemoryReplySchema = z.object({
  contextId: z.string(),
  /** The memory, masked for the reader; empty after a clear. */
  entries: z.array(MemoryEntrySchema),
});
export type MemoryReply = z.infer<typeof MemoryReplySchema>;
