import { z } from "zod";

/**
 * MCP sampling and elicitation as they travel on Loom's bus. The shapes mirror the MCP
 * specification's `sampling/createMessage` (CreateMessageRequest params and CreateMessageResult)
 * and `elicitation/create` (form mode) so a server's request passes through unchanged.
 */

export const SamplingRole = { USER: "user", ASSISTANT: "assistant" } as const;
export type SamplingRole = (typeof SamplingRole)[keyof typeof SamplingRole];

const TextContentSchema = z.object({ type: z.literal("text"), text: z.string() }).loose();
const ImageContentSchema = z
  .object({ type: z.literal("image"), data: z.string(), mimeType: z.string() })
  .loose();
const AudioContentSchema = z
  .object({ type: z.literal("audio"), data: z.string(), mimeType: z.string() })
  .loose();

/** One content block of a sampling message or answer: text, image or audio. */
export const SamplingContentSchema = z.discriminatedUnion("type", [
  TextContentSchema,
  ImageContentSchema,
  AudioContentSchema,
]);
export type SamplingContent = z.infer<typeof SamplingContentSchema>;

export const SamplingMessageSchema = z
  .object({
    role: z.enum(SamplingRole),
    content: z.union([SamplingContentSchema, z.array(SamplingContentSchema)]),
  })
  .loose();
export type SamplingMessage = z.infer<typeof SamplingMessageSchema>;

export const ModelPreferencesSchema = z
  .object({
    hints: z.array(z.object({ name: z.string().optional() }).loose()).optional(),
    costPriority: z.number().min(0).max(1).optional(),
    speedPriority: z.number().min(0).max(1).optional(),
    intelligencePriority: z.number().min(0).max(1).optional(),
  })
  .loose();

/** Largest `maxTokens` the llm agent honours; a server asking for more gets this many. */
export const MAX_SAMPLING_TOKENS = 8_192;

/** The params of an MCP `sampling/createMessage` request (tool use in sampling is not offered). */
export const CreateMessageParamsSchema = z.object({
  messages: z.array(SamplingMessageSchema).min(1),
  modelPreferences: ModelPreferencesSchema.optional(),
  systemPrompt: z.string().optional(),
  includeContext: z.enum(["none", "thisServer", "allServers"]).optional(),
  temperature: z.number().optional(),
  maxTokens: z.number().int().positive(),
  stopSequences: z.array(z.string()).optional(),
  metadata: z.record(z.string(), z.unknown()).optional(),
});
export type CreateMessageParams = z.infer<typeof CreateMessageParamsSchema>;

/**
 * The DataPart of an A2A task to the `llm` agent: which MCP server asks, and what it asks. The
 * grant in the task's metadata binds exactly this object (its digest), for action `llm.sample` on
 * target `<server>`.
 */
export const SamplingRequestSchema = z
  .object({
    server: z.string().min(1),
    params: CreateMessageParamsSchema,
  })
  .strict();
export type SamplingRequest = z.infer<typeof SamplingRequestSchema>;

/** A2A task metadata of a sampling task: the run and step of the tool call that caused it. */
export const SamplingTaskMetadataSchema = z.object({
  runId: z.string().optional(),
  stepId: z.string().optional(),
  /** acp-policy's grant for `llm.sample` on this server with exactly this request. */
  grant: z.string().optional(),
});
export type SamplingTaskMetadata = z.infer<typeof SamplingTaskMetadataSchema>;

/** The answer, the DataPart of the llm agent's artifact: an MCP CreateMessageResult. */
export const CreateMessageAnswerSchema = z.object({
  model: z.string().min(1),
  role: z.literal(SamplingRole.ASSISTANT),
  content: SamplingContentSchema,
  /** `endTurn`, `stopSequence`, `maxTokens`, or what the provider said. */
  stopReason: z.string().optional(),
});
export type CreateMessageAnswer = z.infer<typeof CreateMessageAnswerSchema>;

/** A field of an elicitation form: the primitive JSON Schema subset MCP allows. */
export const ElicitationFieldSchema = z
  .object({ type: z.enum(["string", "number", "integer", "boolean", "array"]) })
  .loose();

/** `requestedSchema` of an MCP `elicitation/create` (form mode): flat, primitive properties. */
export const RequestedSchemaSchema = z
  .object({
    type: z.literal("object"),
    properties: z.record(z.string(), ElicitationFieldSchema),
    required: z.array(z.string()).optional(),
  })
  .loose();
export type RequestedSchema = z.infer<typeof RequestedSchemaSchema>;

/**
 * Sent by the worker on `loom.v1.runs.<runId>.elicit` when a server asks its user for input
 * during a tool call of that run's step. The reply (an ElicitAnswer) comes once someone answers
 * with `loom runs input`, or the run ends.
 */
export const ElicitationRequestSchema = z
  .object({
    stepId: z.string().min(1),
    /** The A2A task of the tool call in flight (`<runId>:<stepId>:<attempt>`). */
    taskId: z.string().min(1),
    server: z.string().min(1),
    message: z.string().max(10_000),
    requestedSchema: RequestedSchemaSchema,
  })
  .strict();
export type ElicitationRequest = z.infer<typeof ElicitationRequestSchema>;

export const ElicitAction = { ACCEPT: "accept", DECLINE: "decline", CANCEL: "cancel" } as const;
export type ElicitAction = (typeof ElicitAction)[keyof typeof ElicitAction];

/** An MCP ElicitResult: accept (with content valid against the requested schema), decline, cancel. */
export const ElicitAnswerSchema = z.object({
  action: z.enum(ElicitAction),
  content: z
    .record(z.string(), z.union([z.string(), z.number(), z.boolean(), z.array(z.string())]))
    .optional(),
  /** Who answered (the principal), when someone did. */
  by: z.string().optional(),
});
export type ElicitAnswer = z.infer<typeof ElicitAnswerSchema>;

/** An elicitation answer one orchestrator hands to the replica driving the run. */
export const ElicitAnswerForwardSchema = z
  .object({ stepId: z.string().min(1), answer: ElicitAnswerSchema })
  .strict();
export type ElicitAnswerForward = z.infer<typeof ElicitAnswerForwardSchema>;
