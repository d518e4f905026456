import { z } from "zod";

export const AlertKind = {
  /** A principal called a tool it had never called before. */
  NEW_TOOL: "new-tool",
  /** A principal's calls in the last window far exceed its usual rate. */
  BURST: "burst",
} as const;
export type AlertKind = (typeof AlertKind)[keyof typeof AlertKind];

/** Published on `loom.v1.alerts` when acp-policy sees an unusual tool call. */
export const AlertSchema = z.object({
  id: z.string(),
  time: z.iso.datetime(),
  kind: z.enum(AlertKind),
  principal: z.string(),
  tool: z.string(),
  message: z.string(),
  runId: z.string().optional(),
  traceId: z.string().optional(),
});
export type Alert = z.infer<typeof AlertSchema>;
