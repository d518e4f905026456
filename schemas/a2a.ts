import { z } from "zod";
import { ObligationsSchema } from "./policy.ts";

/**
 * A2A v1.0 shapes in their JSON wire form, as `@a2a-js/sdk` reads and writes them
 * (`Task.toJSON`, `TaskStatusUpdateEvent.fromJSON`, ...). Only the fields Loom uses are required.
 */

export const TaskState = {
  SUBMITTED: "TASK_STATE_SUBMITTED",
  WORKING: "TASK_STATE_WORKING",
  INPUT_REQUIRED: "TASK_STATE_INPUT_REQUIRED",
  COMPLETED: "TASK_STATE_COMPLETED",
  FAILED: "TASK_STATE_FAILED",
  CANCELED: "TASK_STATE_CANCELED",
  REJECTED: "TASK_STATE_REJECTED",
} as const;
export type TaskState = (typeof TaskState)[keyof typeof TaskState];
export const TaskStateSchema = z.enum(TaskState);

export const TERMINAL_STATES: ReadonlySet<TaskState> = new Set([
  TaskState.COMPLETED,
  TaskState.FAILED,
  TaskState.CANCELED,
  TaskState.REJECTED,
]);

/** `TASK_STATE_INPUT_REQUIRED` -> `input-required`, for people. */
export function shortStateName(state: TaskState): string {
  return state.replace("TASK_STATE_", "").toLowerCase().replaceAll("_", "-");
}

export const Role = { USER: "ROLE_USER", AGENT: "ROLE_AGENT" } as const;
export type Role = (typeof Role)[keyof typeof Role];

const Metadata = z.record(z.string(), z.unknown());
const PartCommon = {
  metadata: Metadata.optional(),
  mediaType: z.string().min(1).optional(),
  filename: z.string().optional(),
};

export const TextPartSchema = z.object({ text: z.string(), ...PartCommon });
/** A2A's JSON form has no null DataPart (the SDK reads `{data: null}` as an empty part). */
export const DataPartSchema = z.object({
  data: z
    .unknown()
    .refine((data) => data !== null && data !== undefined, "a DataPart needs data; null is not data"),
  ...PartCommon,
});
export const UrlPartSchema = z.object({ url: z.string(), ...PartCommon });
/** File bytes, base64-encoded on the wire. */
export const RawPartSchema = z.object({ raw: z.base64(), ...PartCommon });

export const PartSchema = z.union([TextPartSchema, DataPartSchema, UrlPartSchema, RawPartSchema]);
export type Part = z.infer<typeof PartSchema>;
export type TextPart = z.infer<typeof TextPartSchema>;
export type DataPart = z.infer<typeof DataPartSchema>;

export const MessageSchema = z.object({
  messageId: z.string().min(1),
  contextId: z.string().optional(),
  taskId: z.string().optional(),
  role: z.enum(Role),
  parts: z.array(PartSchema).min(1),
  metadata: Metadata.optional(),
});
export type Message = z.infer<typeof MessageSchema>;

export const ArtifactSchema = z.object({
  artifactId: z.string().min(1),
  name: z.string().optional(),
  description: z.string().optional(),
  parts: z.array(PartSchema).min(1),
  metadata: Metadata.optional(),
});
export type Artifact = z.infer<typeof ArtifactSchema>;

export const TaskStatusSchema = z.object({
  state: TaskStateSchema,
  message: MessageSchema.optional(),
  timestamp: z.iso.datetime().optional(),
});
export type TaskStatus = z.infer<typeof TaskStatusSchema>;

export const TaskSchema = z.object({
  id: z.string().min(1),
  contextId: z.string().min(1),
  status: TaskStatusSchema,
  artifacts: z.array(ArtifactSchema).optional(),
  history: z.array(MessageSchema).optional(),
  metadata: Metadata.optional(),
});
export type Task = z.infer<typeof TaskSchema>;

export const TaskStatusUpdateEventSchema = z.object({
  taskId: z.string().min(1),
  contextId: z.string().min(1),
  status: TaskStatusSchema,
  metadata: Metadata.optional(),
});
export type TaskStatusUpdateEvent = z.infer<typeof TaskStatusUpdateEventSchema>;

export const TaskArtifactUpdateEventSchema = z.object({
  taskId: z.string().min(1),
  contextId: z.string().min(1),
  artifact: ArtifactSchema,
  append: z.boolean().optional(),
  lastChunk: z.boolean().optional(),
  metadata: Metadata.optional(),
});
export type TaskArtifactUpdateEvent = z.infer<typeof TaskArtifactUpdateEventSchema>;

/** A client's webhook for a task's updates (A2A `TaskPushNotificationConfig`). */
export const PushNotificationConfigSchema = z.object({
  id: z.string().min(1),
  taskId: z.string().min(1),
  url: z.url(),
  /** Echoed in `X-A2A-Notification-Token`, so the receiver can tell its notifications apart. */
  token: z.string().optional(),
  /** Sent as `Authorization: <scheme> <credentials>`. */
  authentication: z.object({ scheme: z.string().min(1), credentials: z.string() }).optional(),
});
export type PushNotificationConfig = z.infer<typeof PushNotificationConfigSchema>;

/**
 * A webhook as Loom keeps it (KV `loom_push`): the client's config, and the masks the registrant's
 * `runs.read` decision asked for when it registered (never its token). Every event is masked so
 * before it is posted. Absent in registrations made before webhooks were masked: those are sent
 * nothing.
 */
export const PushRegistrationSchema = PushNotificationConfigSchema.extend({
  readerObligations: ObligationsSchema.optional(),
});
export type PushRegistration = z.infer<typeof PushRegistrationSchema>;
