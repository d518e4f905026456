import { z } from "zod";
import { TaskStateSchema } from "./a2a.ts";
import { CONTEXT_ID_PATTERN, MemoryEntrySchema } from "./memory.ts";
import { RunEventSchema, RunIdSchema, RunRecordSchema } from "./run.ts";

/**
 * What a reader sees of a run (`loom.v1.runs.get`): its record without the machine's snapshot, the
 * definition or the credentials it runs with, and masked as policy asks for that reader.
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
  createdAt: true,
  updatedAt: true,
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
