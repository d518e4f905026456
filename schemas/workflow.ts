import { z } from "zod";
import { DurationSchema } from "./duration.ts";
import { ErrorCode } from "./errors.ts";

/** A slug usable as a subject token and a KV key: letters, digits, `-` and `_`. */
export const SlugSchema = z
  .string()
  .regex(/^[a-z0-9][a-z0-9_-]{0,63}$/i, "use letters, digits, - and _ only");

/** A JSONata expression is written as a string wrapped in `{% %}`; anything else is a literal. */
export const EXPRESSION_PATTERN = /^\s*\{%([\s\S]*)%\}\s*$/;

const QualifiedNameSchema = z
  .string()
  .regex(/^[a-z0-9][a-z0-9_-]*\.[^\s]+$/i, "write <server>.<name>, for example crm.get_contact");

export const RetrySchema = z
  .object({
    /** Attempts in all, the first one included. */
    max: z.number().int().min(1).max(20).default(1),
    /** Delay before the second attempt; doubled for each later one, with jitter. */
    backoff: DurationSchema.default(200),
    /** Error codes worth another attempt; by default the transient ones (unavailable, timeouts). */
    on: z.array(z.enum(ErrorCode)).min(1).optional(),
  })
  .strict();
export type Retry = z.infer<typeof RetrySchema>;

/** What every step that does work may say about retries, timeouts and where its result lands. */
const WorkFields = {
  id: SlugSchema,
  /** The name its result takes in `$steps` (default: the step id). */
  as: SlugSchema.optional(),
  timeout: DurationSchema.optional(),
  retry: RetrySchema.optional(),
};

/** Arguments: any string value may be a `{% jsonata %}` expression over `$input`, `$steps`, `$memory`. */
const ArgumentsSchema = z.record(z.string(), z.unknown()).default({});

export const CallStepSchema = z
  .object({ ...WorkFields, /** `<server>.<tool>` */ call: QualifiedNameSchema, with: ArgumentsSchema })
  .strict();
export type CallStep = z.infer<typeof CallStepSchema>;

/** `mcp://<server>/<path>` reads `<server>://<path>` from that server; `{server, uri}` names both. */
export const ReadStepSchema = z
  .object({
    ...WorkFields,
    read: z.union([
      z
        .string()
        .regex(
          /^(mcp:\/\/[a-z0-9][a-z0-9_-]*\/.+|\{%[\s\S]*%\})$/i,
          "write mcp://<server>/<path> (it may hold {% %})",
        ),
      z.object({ server: SlugSchema, uri: z.string().min(1) }).strict(),
    ]),
  })
  .strict();
export type ReadStep = z.infer<typeof ReadStepSchema>;

export const PromptStepSchema = z
  .object({ ...WorkFields, /** `<server>.<prompt>` */ prompt: QualifiedNameSchema, with: ArgumentsSchema })
  .strict();
export type PromptStep = z.infer<typeof PromptStepSchema>;

export const DelegateStepSchema = z
  .object({
    ...WorkFields,
    delegate: z
      .object({
        /** An agent on the bus: it takes A2A tasks on `loom.v1.agents.<agent>.tasks`. */
        agent: SlugSchema.optional(),
        /** Or an A2A agent anywhere, by the base URL its Agent Card is served from. */
        url: z.url().optional(),
        /** For `url`: the skill to ask for (sent as the message's `metadata.skill`). */
        skill: z.string().min(1).optional(),
        /** Text (or a `{% %}` expression) sent as the task's message. */
        message: z.unknown(),
      })
      .strict()
      .refine((delegate) => (delegate.agent === undefined) !== (delegate.url === undefined), {
        message: "name either an agent on the bus or the url of an A2A agent",
      }),
  })
  .strict();
export type DelegateStep = z.infer<typeof DelegateStepSchema>;

/** The kinds of step that do one piece of work through an agent: the only ones that can run in `parallel`. */
export const WorkStepSchemas = {
  call: CallStepSchema,
  read: ReadStepSchema,
  prompt: PromptStepSchema,
  delegate: DelegateStepSchema,
} as const;
export const WorkStepSchema = z.union([CallStepSchema, ReadStepSchema, PromptStepSchema, DelegateStepSchema]);
export type WorkStep = z.infer<typeof WorkStepSchema>;

/** Compensation: steps run when the step fails for good, then the run fails or carries on. */
export const OnErrorSchema = z
  .object({
    steps: z.array(WorkStepSchema).default([]),
    // biome-ignore lint/suspicious/noThenProperty: `then` is the DSL's word; a parsed OnError is plain data, never awaited.
    then: z.enum(["fail", "continue"]).default("fail"),
  })
  .strict();
export type OnError = z.infer<typeof OnErrorSchema>;

const withOnError = <Shape extends z.ZodRawShape>(shape: Shape) => ({
  ...shape,
  onError: OnErrorSchema.optional(),
});

export const ParallelStepSchema = z
  .object(
    withOnError({
      id: SlugSchema,
      as: SlugSchema.optional(),
      /** Branches run at once; the step ends when all have ended, and fails if one fails. */
      parallel: z.array(WorkStepSchema).min(2),
    }),
  )
  .strict();
export type ParallelStep = z.infer<typeof ParallelStepSchema>;

export const ChoiceStepSchema = z
  .object({
    id: SlugSchema,
    /** The first branch whose `when` is true decides where the run goes. */
    choice: z
      .array(
        z
          .object({ when: z.string().regex(EXPRESSION_PATTERN, "write {% condition %}"), goto: SlugSchema })
          .strict(),
      )
      .min(1),
    /** Where to go when no condition holds; by default the next step. */
    default: SlugSchema.optional(),
  })
  .strict();
export type ChoiceStep = z.infer<typeof ChoiceStepSchema>;

export const ApprovalStepSchema = z
  .object({
    id: SlugSchema,
    as: SlugSchema.optional(),
    approval: z
      .object({
        prompt: z.string().min(1),
        /** Only principals holding one of these roles may answer. */
        roles: z.array(z.string().min(1)).min(1),
        /** What a rejection does: end the run `rejected` (default), `fail` it, or go to a step. */
        onReject: z
          .union([z.enum(["reject", "fail"]), z.object({ goto: SlugSchema }).strict()])
          .default("reject"),
      })
      .strict(),
  })
  .strict();
export type ApprovalStep = z.infer<typeof ApprovalStepSchema>;

/** Every kind of step, by the key that makes a step that kind. */
export const StepSchemas = {
  call: CallStepSchema.extend({ onError: OnErrorSchema.optional() }).strict(),
  read: ReadStepSchema.extend({ onError: OnErrorSchema.optional() }).strict(),
  prompt: PromptStepSchema.extend({ onError: OnErrorSchema.optional() }).strict(),
  delegate: DelegateStepSchema.extend({ onError: OnErrorSchema.optional() }).strict(),
  parallel: ParallelStepSchema,
  choice: ChoiceStepSchema,
  approval: ApprovalStepSchema,
} as const;
export const StepSchema = z.union([
  StepSchemas.call,
  StepSchemas.read,
  StepSchemas.prompt,
  StepSchemas.delegate,
  StepSchemas.parallel,
  StepSchemas.choice,
  StepSchemas.approval,
]);
export type Step = z.infer<typeof StepSchema>;

export const WorkflowSchema = z
  .object({
    id: SlugSchema,
    version: z.number().int().min(1).default(1),
    description: z.string().optional(),
    /** JSON Schema the run input must satisfy. */
    input: z.record(z.string(), z.unknown()).optional(),
    steps: z.array(StepSchema).min(1),
    /** The run's result: an expression over `$input` and `$steps`; by default the last step's result. */
    output: z.unknown().optional(),
    /** The longest a run may take, waiting for approvals included; past it the run fails. */
    deadline: DurationSchema.optional(),
    /** Example inputs, shown to A2A clients in the skill this workflow becomes. */
    examples: z.array(z.record(z.string(), z.unknown())).optional(),
  })
  .strict()
  .superRefine((workflow, context) => {
    const seen = new Set<string>();
    const topLevel = new Set(workflow.steps.map((step) => step.id));
    for (const [index, step] of workflow.steps.entries()) {
      for (const { id, path } of stepIds(step, ["steps", index])) {
        if (seen.has(id))
          context.addIssue({
            code: "custom",
            path: [...path, "id"],
            message: `step id "${id}" is used twice`,
          });
        seen.add(id);
      }
      for (const { target, path } of gotoTargets(step)) {
        if (!topLevel.has(target)) {
          context.addIssue({
            code: "custom",
            path: ["steps", index, ...path],
            message: `no top-level step "${target}" to go to`,
          });
        }
      }
    }
  });
export type Workflow = z.infer<typeof WorkflowSchema>;
/** A definition as written in a file, before defaults are applied. */
export type WorkflowInput = z.input<typeof WorkflowSchema>;

/** Every step id a step defines (itself, its branches, its compensation steps), with where it is. */
function stepIds(step: Step, path: PropertyKey[]): Array<{ id: string; path: PropertyKey[] }> {
  const ids = [{ id: step.id, path }];
  if ("parallel" in step)
    ids.push(
      ...step.parallel.map((branch, index) => ({ id: branch.id, path: [...path, "parallel", index] })),
    );
  if ("onError" in step && step.onError !== undefined) {
    ids.push(
      ...step.onError.steps.map((branch, index) => ({
        id: branch.id,
        path: [...path, "onError", "steps", index],
      })),
    );
  }
  return ids;
}

function gotoTargets(step: Step): Array<{ target: string; path: PropertyKey[] }> {
  if ("choice" in step) {
    const targets = step.choice.map((branch, index) => ({
      target: branch.goto,
      path: ["choice", index, "goto"],
    }));
    return step.default === undefined ? targets : [...targets, { target: step.default, path: ["default"] }];
  }
  if ("approval" in step && typeof step.approval.onReject === "object") {
    return [{ target: step.approval.onReject.goto, path: ["approval", "onReject", "goto"] }];
  }
  return [];
}

/** The kinds of step, each named after the key that makes a step that kind. */
export const STEP_KINDS = ["call", "read", "prompt", "delegate", "parallel", "choice", "approval"] as const;
export type StepKind = (typeof STEP_KINDS)[number];

export function stepKind(step: Step): StepKind {
  if ("call" in step) return "call";
  if ("read" in step) return "read";
  if ("prompt" in step) return "prompt";
  if ("delegate" in step) return "delegate";
  if ("parallel" in step) return "parallel";
  if ("choice" in step) return "choice";
  return "approval";
}

/** Sent on `loom.v1.workflows.apply`: a definition as written, validated by the orchestrator. */
export const WorkflowApplySchema = z.object({ definition: z.unknown() }).strict();
export const WorkflowApplyReplySchema = z.object({
  id: z.string(),
  version: z.number().int(),
  /** False when this exact version was registered already (applying is idempotent). */
  created: z.boolean(),
  /** What may not work although the definition is valid, such as tools no worker offers now. */
  warnings: z.array(z.string()).default([]),
});
export type WorkflowApplyReply = z.infer<typeof WorkflowApplyReplySchema>;

/** Sent on `loom.v1.workflows.graph`: a registered id (`hello`, `hello@2`) or a whole definition. */
export const WorkflowGraphSchema = z
  .object({ workflow: z.union([z.string().min(1), z.record(z.string(), z.unknown())]) })
  .strict();
export const WorkflowGraphReplySchema = z.object({
  id: z.string(),
  version: z.number().int(),
  mermaid: z.string(),
});
export type WorkflowGraphReply = z.infer<typeof WorkflowGraphReplySchema>;

/** Sent on `loom.v1.workflows.list`: every registered workflow. */
export const WorkflowListSchema = z.object({}).strict();
export const WorkflowSummarySchema = z.object({
  id: z.string(),
  /** Registered versions, oldest first; `loom submit <id>` runs the last. */
  versions: z.array(z.number().int()),
  description: z.string().optional(),
  steps: z.number().int(),
});
export type WorkflowSummary = z.infer<typeof WorkflowSummarySchema>;
export const WorkflowListReplySchema = z.object({ workflows: z.array(WorkflowSummarySchema) });

/** Sent on `loom.v1.workflows.show`: one registered definition, the latest version unless one is named. */
export const WorkflowShowSchema = z
  .object({ id: z.string().min(1), version: z.number().int().min(1).optional() })
  .strict();
export const WorkflowShowReplySchema = z.object({ workflow: WorkflowSchema });
