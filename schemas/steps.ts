import { z } from "zod";
import { TaskSchema } from "./a2a.ts";
import { WireErrorSchema } from "./errors.ts";

/**
 * A step attempt's entry in KV `loom_steps`, keyed `<runId>.<stepId>.<attempt>`. A worker claims
 * it before calling (first writer wins), then stores the outcome; a re-dispatched attempt gets the
 * stored outcome instead of a second call. A grant is bound to one attempt, so the claim is also
 * where its use is recorded: a grant named on a claim is never used again.
 */
export const StepRecordSchema = z.discriminatedUnion("status", [
  z.object({
    status: z.literal("running"),
    worker: z.string(),
    claimedAt: z.iso.datetime(),
    /** After this long without an outcome the claim is presumed dead and may be taken over. */
    leaseMs: z.number().int().positive(),
    /**
     * The ids of the grants used on this attempt: this claim's, after those of the lapsed claims it
     * took over. (A claim stored before grants were recorded here names none.)
     */
    grants: z.array(z.string()).default([]),
  }),
  z.object({ status: z.literal("succeeded"), task: TaskSchema, finishedAt: z.iso.datetime() }),
  z.object({ status: z.literal("failed"), error: WireErrorSchema, finishedAt: z.iso.datetime() }),
]);
export type StepRecord = z.infer<typeof StepRecordSchema>;

export function stepRecordKey(runId: string, stepId: string, attempt: number): string {
  return `${runId}.${stepId}.${attempt}`;
}

/**
 * The `_meta` key under which a tool call carries its idempotency key, `<runId>:<stepId>`. It is
 * the same for every attempt of a step, so a tool that honours it applies its effect once even
 * when a worker died after the effect but before the outcome was stored.
 */
export const IDEMPOTENCY_META_KEY = "io.loom/idempotency-key";

export function toolIdempotencyKey(runId: string, stepId: string): string {
  return `${runId}:${stepId}`;
}
