import {
  Artifact as SdkArtifact,
  Message as SdkMessage,
  Part as SdkPart,
  StreamResponse as SdkStreamResponse,
  Task as SdkTask,
  TaskArtifactUpdateEvent as SdkTaskArtifactUpdateEvent,
  TaskState as SdkTaskState,
  TaskStatusUpdateEvent as SdkTaskStatusUpdateEvent,
  taskStateFromJSON,
  taskStateToJSON,
} from "@a2a-js/sdk";
import { describe, expect, it } from "vitest";
import type { z } from "zod";
import {
  ArtifactSchema,
  MessageSchema,
  PartSchema,
  TaskArtifactUpdateEventSchema,
  TaskSchema,
  TaskState,
  TaskStatusUpdateEventSchema,
} from "../../schemas/a2a.ts";
import { RunEventSchema } from "../../schemas/run.ts";

/** What `@a2a-js/sdk` generates for each wire type: a JSON codec. */
interface Codec {
  fromJSON(json: unknown): unknown;
  toJSON(value: never): unknown;
}

/** Parses with Loom's schema, then proves the SDK reads and writes back the very same JSON. */
function expectSameWireJson(schema: z.ZodType, codec: Codec, sample: unknown): void {
  const loom = schema.parse(sample);
  expect(loom).toEqual(sample);
  const roundTripped = (codec.toJSON as (value: unknown) => unknown)(codec.fromJSON(sample));
  expect(roundTripped).toEqual(sample);
}

const textPart = { text: "Contact c-1 is Ada Lovelace", mediaType: "text/plain" };
const dataPart = {
  data: { server: "crm", tool: "get_contact", arguments: { id: "c-1" } },
  mediaType: "application/json",
};
const urlPart = { url: "mcp://crm/contacts/c-1", mediaType: "application/json" };
const rawPart = { raw: "iVBORw0KGgo=", mediaType: "image/png", filename: "chart.png" };
const partWithMetadata = { text: "hi", metadata: { source: "crm", nested: { n: 1 } } };

const message = {
  messageId: "msg-1",
  contextId: "ctx-1",
  taskId: "task-1",
  role: "ROLE_USER",
  parts: [dataPart],
  metadata: { runId: "run-1", stepId: "contact" },
};

const artifact = {
  artifactId: "art-1",
  name: "crm.get_contact",
  description: "the contact",
  parts: [dataPart, textPart, urlPart, rawPart],
  metadata: { tool: "crm.get_contact" },
};

const statusUpdate = {
  taskId: "task-1",
  contextId: "ctx-1",
  status: {
    state: TaskState.WORKING,
    timestamp: "2026-01-02T03:04:05.678Z",
    message: { messageId: "msg-2", role: "ROLE_AGENT", parts: [textPart] },
  },
  metadata: { stepId: "contact", attempt: 1 },
};

const task = {
  id: "task-1",
  contextId: "ctx-1",
  status: { state: TaskState.COMPLETED, timestamp: "2026-01-02T03:04:05Z" },
  artifacts: [artifact],
  history: [message],
  metadata: { runId: "run-1" },
};

describe("A2A schemas against @a2a-js/sdk wire JSON", () => {
  it.each([
    ["text", textPart],
    ["data", dataPart],
    ["url", urlPart],
    ["raw", rawPart],
    ["with metadata", partWithMetadata],
  ])("a2a - a %s part reads and writes the same as the SDK's Part", (_name, part) => {
    expectSameWireJson(PartSchema, SdkPart, part);
  });

  it("a2a - a Message reads and writes the same as the SDK's Message", () => {
    expectSameWireJson(MessageSchema, SdkMessage, message);
  });

  it("a2a - an Artifact reads and writes the same as the SDK's Artifact", () => {
    expectSameWireJson(ArtifactSchema, SdkArtifact, artifact);
  });

  it("a2a - a TaskStatusUpdateEvent reads and writes the same as the SDK's", () => {
    expectSameWireJson(TaskStatusUpdateEventSchema, SdkTaskStatusUpdateEvent, statusUpdate);
  });

  it("a2a - a TaskArtifactUpdateEvent reads and writes the same as the SDK's", () => {
    const event = { taskId: "task-1", contextId: "ctx-1", artifact, append: true, lastChunk: true };
    expectSameWireJson(TaskArtifactUpdateEventSchema, SdkTaskArtifactUpdateEvent, event);
  });

  it("a2a - a Task reads and writes the same as the SDK's Task", () => {
    expectSameWireJson(TaskSchema, SdkTask, task);
  });

  it("a2a - the SDK reads Loom's roles and Loom's states as the intended enum values", () => {
    const decoded = SdkTask.fromJSON(task);
    expect(decoded.status?.state).toBe(SdkTaskState.TASK_STATE_COMPLETED);
    expect(SdkMessage.fromJSON(message).role).toBe(1);
    expect(decoded.artifacts[0]?.parts[0]?.content?.$case).toBe("data");
    expect(decoded.artifacts[0]?.parts[3]?.content?.$case).toBe("raw");
  });

  it.each(Object.values(TaskState))("a2a - Loom task state %s is a valid SDK TaskState", (state) => {
    const value = taskStateFromJSON(state);
    expect(value).not.toBe(SdkTaskState.UNRECOGNIZED);
    expect(value).not.toBe(SdkTaskState.TASK_STATE_UNSPECIFIED);
    expect(taskStateToJSON(value)).toBe(state);
  });

  it("a2a - the SDK does not recognise a made-up state, so the check above can fail", () => {
    expect(taskStateFromJSON("TASK_STATE_DAYDREAMING")).toBe(SdkTaskState.UNRECOGNIZED);
  });

  it("a2a - Loom's schemas refuse what the SDK would not write", () => {
    expect(TaskSchema.safeParse({ ...task, status: { state: "completed" } }).success).toBe(false);
    expect(MessageSchema.safeParse({ ...message, role: "user" }).success).toBe(false);
    expect(MessageSchema.safeParse({ ...message, parts: [] }).success).toBe(false);
    expect(PartSchema.safeParse({ raw: "not base64!" }).success).toBe(false);
  });
});

describe("run events as A2A StreamResponse", () => {
  it("a2a - a run event {statusUpdate} is an SDK StreamResponse", () => {
    const event = { statusUpdate: statusUpdate };
    expectSameWireJson(RunEventSchema, SdkStreamResponse, event);
    expect(SdkStreamResponse.fromJSON(event).payload?.$case).toBe("statusUpdate");
  });

  it("a2a - a run event {artifactUpdate} is an SDK StreamResponse", () => {
    const event = { artifactUpdate: { taskId: "task-1", contextId: "ctx-1", artifact } };
    expectSameWireJson(RunEventSchema, SdkStreamResponse, event);
    expect(SdkStreamResponse.fromJSON(event).payload?.$case).toBe("artifactUpdate");
  });

  it("a2a - a run event carrying both payloads is refused, as a StreamResponse holds one", () => {
    const both = { statusUpdate, artifactUpdate: { taskId: "task-1", contextId: "ctx-1", artifact } };
    expect(RunEventSchema.safeParse(both).success).toBe(false);
  });
});
