import { z } from "zod";

/**
 * One finished span as a service publishes it on `loom.v1.spans.<traceId>` (stream `LOOM_SPANS`),
 * so `loom runs trace` can draw a run without a tracing backend. A summary, not OTLP: enough for a
 * waterfall and the attributes Loom sets.
 */
export const SpanRecordSchema = z.object({
  traceId: z.string().regex(/^[0-9a-f]{32}$/),
  spanId: z.string().regex(/^[0-9a-f]{16}$/),
  parentSpanId: z
    .string()
    .regex(/^[0-9a-f]{16}$/)
    .optional(),
  name: z.string(),
  /** `internal`, `server`, `client`, `producer` or `consumer`. */
  kind: z.string(),
  /** The `service.name` of the process that made the span. */
  service: z.string(),
  /** Start, in milliseconds since the epoch (fractional). */
  startMs: z.number(),
  durationMs: z.number().nonnegative(),
  status: z.enum(["unset", "ok", "error"]),
  statusMessage: z.string().optional(),
  attributes: z.record(z.string(), z.union([z.string(), z.number(), z.boolean()])),
  /** Spans this one is linked to (a resumed run links to the run it carries on). */
  links: z.array(z.object({ traceId: z.string(), spanId: z.string() })).default([]),
});
export type SpanRecord = z.infer<typeof SpanRecordSchema>;
