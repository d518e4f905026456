import { z } from "zod";
import { DurationSchema } from "./duration.ts";

/** A slug usable as a subject token and a KV key: letters, digits, `-` and `_`. */
export const SlugSchema = z
  .string()
  .regex(/^[a-z0-9][a-z0-9_-]{0,63}$/i, "use letters, digits, - and _ only");

/** A JSONata expression is written as a string wrapped in `{% %}`; anything else is a literal. */
export const EXPRESSION_PATTERN = /^\s*\{%([\s\S]*)%\}\s*$/;

export const RetrySchema = z
  .object({
    /** Attempts in all, the first one included. */
    max: z.number().int().min(1).max(20).default(1),
    backoff: DurationSchema.default(200),
  })
  .strict();
export type Retry = z.infer<typeof RetrySchema>;

export const CallStepSchema = z
  .object({
    id: SlugSchema,
    /** `<server>.<tool>`, as registered by the MCP worker. */
    call: z
      .string()
      .regex(/^[a-z0-9][a-z0-9_-]*\.[^\s]+$/i, "write <server>.<tool>, for example crm.get_contact"),
    /** Tool arguments; any string value may be a `{% jsonata %}` expression over `$input` and `$steps`. */
    with: z.record(z.string(), z.unknown()).default({}),
    timeout: DurationSchema.optional(),
    retry: RetrySchema.optional(),
  })
  .strict();
export type CallStep = z.infer<typeof CallStepSchema>;

export const StepSchema = CallStepSchema;
export type Step = z.infer<typeof StepSchema>;

export const WorkflowSchema = z
  .object({
    id: SlugSchema,
    version: z.number().int().min(1).default(1),
    description: z.string().optional(),
    /** JSON Schema the run input must satisfy. */
    input: z.record(z.string(), z.unknown()).optional(),
    steps: z
      .array(StepSchema)
      .min(1)
      .refine(
        (steps) => new Set(steps.map((step) => step.id)).size === steps.length,
        "step ids must be unique",
      ),
    /** The run's result: an expression over `$input` and `$steps`; by default the last step's result. */
    output: z.unknown().optional(),
  })
  .strict();
export type Workflow = z.infer<typeof WorkflowSchema>;
/** A definition as written in a file, before defaults are applied. */
export type WorkflowInput = z.input<typeof WorkflowSchema>;
