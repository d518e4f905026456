import { z } from "zod";
import { WireErrorSchema } from "./errors.ts";

/** What one finished run leaves in its context's memory. */
export const MemoryEntrySchema = z.object({
  runId: z.string(),
  workflowId: z.string(),
  at: z.iso.datetime(),
  input: z.record(z.string(), z.unknown()),
  output: z.unknown().optional(),
  error: WireErrorSchema.optional(),
});
export type MemoryEntry = z.infer<typeof MemoryEntrySchema>;

/**
 * A context's memory in KV `loom_memory`, keyed by A2A contextId: the latest runs first-in
 * first-out, bounded by count and bytes; the bucket's TTL forgets idle contexts.
 */
export const ContextMemorySchema = z.object({
  contextId: z.string(),
  /** Who started the context's first run: policy lets the owner read and clear the memory. */
  owner: z.string().optional(),
  entries: z.array(MemoryEntrySchema),
});
export type ContextMemory = z.infer<typeof ContextMemorySchema>;

/** A contextId doubles as a KV key. */
export const CONTEXT_ID_PATTERN = /^[A-Za-z0-9_-]{1,128}$/;
