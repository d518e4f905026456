import { z } from "zod";
import { ErrorCode } from "./errors.ts";
import { RunIdSchema } from "./run.ts";

/** Which MCP operation a call record is about. */
export const CallKind = { TOOL: "tool", RESOURCE: "resource", PROMPT: "prompt" } as const;
export type CallKind = (typeof CallKind)[keyof typeof CallKind];

/** A feedback verdict on one step's call. */
export const Verdict = { OK: "ok", BAD: "bad" } as const;
export type Verdict = (typeof Verdict)[keyof typeof Verdict];

/** What identifies the thing judged: a tool (or resource, or prompt) of one version of a server. */
const CallTargetShape = {
  server: z.string().min(1),
  /** The tool or prompt name, or the resource URI. */
  target: z.string().min(1),
  kind: z.enum(CallKind),
  /** The version the call went to: a configured version name, else what the server reported. */
  serverVersion: z.string().min(1),
};

/**
 * One MCP call the worker made (or answered from its cache), on `loom.v1.toolcalls.<server>[.<runId>]`
 * in stream `LOOM_TOOL_CALLS`. No arguments and no results: those stay in the audit trail as digests.
 */
export const ToolCallRecordSchema = z
  .object({
    type: z.literal("call"),
    ...CallTargetShape,
    /** `ok`, or the error code the call ended with. */
    outcome: z.union([z.literal("ok"), z.enum(ErrorCode)]),
    latencyMs: z.number().nonnegative(),
    /** The answer came from the worker's cache: the server was not called. */
    cached: z.boolean(),
    runId: RunIdSchema.optional(),
    stepId: z.string().min(1).optional(),
    timestamp: z.iso.datetime(),
  })
  .strict();
export type ToolCallRecord = z.infer<typeof ToolCallRecordSchema>;

/** A verdict on one step's call, on `loom.v1.feedback.<runId>` in stream `LOOM_TOOL_CALLS`. */
export const FeedbackRecordSchema = z
  .object({
    type: z.literal("feedback"),
    ...CallTargetShape,
    runId: RunIdSchema,
    stepId: z.string().min(1),
    verdict: z.enum(Verdict),
    comment: z.string().max(2_000).optional(),
    /** The principal who gave it; a later verdict of theirs on the same step replaces this one. */
    by: z.string().min(1),
    timestamp: z.iso.datetime(),
  })
  .strict();
export type FeedbackRecord = z.infer<typeof FeedbackRecordSchema>;

/** Anything stream `LOOM_TOOL_CALLS` holds. */
export const ToolCallStreamRecordSchema = z.discriminatedUnion("type", [
  ToolCallRecordSchema,
  FeedbackRecordSchema,
]);
export type ToolCallStreamRecord = z.infer<typeof ToolCallStreamRecordSchema>;

/** Sent on `loom.v1.runs.<runId>.feedback`; the caller's token travels in the Authorization header. */
export const FeedbackRequestSchema = z
  .object({
    stepId: z.string().min(1),
    verdict: z.enum(Verdict),
    comment: z.string().max(2_000).optional(),
  })
  .strict();
export type FeedbackRequest = z.infer<typeof FeedbackRequestSchema>;

/** The reply to feedback: the verdict as recorded, with the tool and server version it judges. */
export const FeedbackReplySchema = FeedbackRecordSchema.omit({ type: true });
export type FeedbackReply = z.infer<typeof FeedbackReplySchema>;

/** Sent on `loom.v1.tools.stats`. */
export const ToolStatsRequestSchema = z
  .object({
    /** How far back to look, in milliseconds. */
    sinceMs: z.number().int().positive(),
  })
  .strict();
export type ToolStatsRequest = z.infer<typeof ToolStatsRequestSchema>;

/** Latency percentiles in milliseconds; absent when no call reached the server. */
export const LatencyPercentilesSchema = z.object({ p50: z.number(), p95: z.number(), p99: z.number() });
export type LatencyPercentiles = z.infer<typeof LatencyPercentilesSchema>;

/** One tool (or resource, or prompt) of one server version over the window. */
export const ToolStatsRowSchema = z.object({
  ...CallTargetShape,
  calls: z.number().int().nonnegative(),
  errors: z.number().int().nonnegative(),
  /** errors / calls, 0 when there were no calls. */
  errorRate: z.number().min(0).max(1),
  /** Over the calls that reached the server: a cache hit says nothing about the server's speed. */
  latencyMs: LatencyPercentilesSchema.optional(),
  cached: z.number().int().nonnegative(),
  /** cached / calls, 0 when there were no calls. */
  cachedShare: z.number().min(0).max(1),
  feedback: z.object({ ok: z.number().int().nonnegative(), bad: z.number().int().nonnegative() }),
});
export type ToolStatsRow = z.infer<typeof ToolStatsRowSchema>;

/** The reply of `loom.v1.tools.stats`. */
export const ToolStatsSchema = z.object({
  since: z.iso.datetime(),
  until: z.iso.datetime(),
  rows: z.array(ToolStatsRowSchema),
});
export type ToolStats = z.infer<typeof ToolStatsSchema>;
