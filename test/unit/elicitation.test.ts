import { McpError } from "@modelcontextprotocol/sdk/types.js";
import { ROOT_CONTEXT } from "@opentelemetry/api";
import { describe, expect, it } from "vitest";
import { createActor } from "xstate";
import { TaskState } from "../../schemas/a2a.ts";
import { statusLine } from "../../services/cli/render.ts";
import { JsonSchemaValidator } from "../../services/kit/index.ts";
import { PausableDeadline } from "../../services/kit/pausable-deadline.ts";
import { type CallOrigin, CallsInFlight } from "../../services/mcp-worker/server-requests.ts";
import { TaskMasking } from "../../services/mcp-worker/task-masking.ts";
import { awaitedElicitations, pendingEffects, taskStateOf } from "../../services/orchestrator/demands.ts";
import { elicitAnswerOf } from "../../services/orchestrator/elicitations.ts";
import { compileWorkflow, type PendingElicitation } from "../../services/orchestrator/run-machine.ts";
import { parseWorkflow } from "../../services/orchestrator/workflow-catalog.ts";

const WORKFLOW = parseWorkflow(
  {
    id: "ask",
    steps: [
      { id: "form", call: "everything.trigger-elicitation-request", retry: { max: 2, on: ["TOOL_ERROR"] } },
    ],
  },
  "test workflow",
);

const QUESTION: PendingElicitation = {
  server: "everything",
  message: "Who are you?",
  requestedSchema: {
    type: "object",
    properties: { name: { type: "string" }, email: { type: "string", format: "email" } },
    required: ["name"],
  },
  attempt: 1,
  reply: "_INBOX.worker.1",
};

describe("elicitation - a server's question in the run machine", () => {
  it("elicitation - the run is input-required while the question is open, working again once answered", () => {
    const actor = createActor(compileWorkflow(WORKFLOW), { input: { input: {} } }).start();
    expect(taskStateOf(WORKFLOW, actor.getSnapshot())).toBe(TaskState.WORKING);
    actor.send({ type: "STEP.ELICIT", stepId: "form", elicitation: QUESTION });
    expect(awaitedElicitations(actor.getSnapshot())).toEqual(["form"]);
    expect(taskStateOf(WORKFLOW, actor.getSnapshot())).toBe(TaskState.INPUT_REQUIRED);
    // The tool call is still the step's work under way: nothing new is dispatched.
    expect(pendingEffects(WORKFLOW, actor.getSnapshot()).map((effect) => effect.key)).toEqual(["form#1"]);
    actor.send({
      type: "STEP.ELICIT_ANSWERED",
      stepId: "form",
      answer: { action: "accept", content: { name: "Ada" } },
    });
    expect(awaitedElicitations(actor.getSnapshot())).toEqual([]);
    expect(taskStateOf(WORKFLOW, actor.getSnapshot())).toBe(TaskState.WORKING);
  });

  it("elicitation - a question of an earlier attempt is no longer open after a retry", () => {
    const actor = createActor(compileWorkflow(WORKFLOW), { input: { input: {} } }).start();
    actor.send({ type: "STEP.ELICIT", stepId: "form", elicitation: QUESTION });
    actor.send({
      type: "STEP.FAILED",
      stepId: "form",
      error: { code: "TOOL_ERROR", message: "server crashed" },
    });
    expect(awaitedElicitations(actor.getSnapshot())).toEqual([]);
    expect(taskStateOf(WORKFLOW, actor.getSnapshot())).toBe(TaskState.WORKING);
  });
});

describe("elicitation - the answer loom runs input gives", () => {
  const validator = new JsonSchemaValidator();

  it("elicitation - --data that fits the requested schema is accepted with that content", () => {
    expect(
      elicitAnswerOf(
        { data: { name: "Ada", email: "ada@example.com" } },
        "form",
        QUESTION,
        "tess",
        validator,
      ),
    ).toEqual({
      action: "accept",
      content: { name: "Ada", email: "ada@example.com" },
      by: "tess",
    });
  });

  it("elicitation - --data that breaks the schema, or no answer at all, is INVALID_INPUT", () => {
    expect(() =>
      elicitAnswerOf({ data: { email: "ada@example.com" } }, "form", QUESTION, "tess", validator),
    ).toThrow(/does not match its schema/);
    expect(() =>
      elicitAnswerOf({ data: { name: "Ada", email: "nope" } }, "form", QUESTION, "tess", validator),
    ).toThrow(/does not match its schema/);
    expect(() => elicitAnswerOf({ text: "Ada" }, "form", QUESTION, "tess", validator)).toThrow(/--data/);
  });

  it("elicitation - --reject declines", () => {
    expect(elicitAnswerOf({ approved: false }, "form", QUESTION, "tess", validator)).toEqual({
      action: "decline",
      by: "tess",
    });
  });
});

describe("elicitation - which tool call a server's request belongs to", () => {
  const noop = () => {};
  const origin = (taskId: string): CallOrigin => ({
    server: "everything",
    taskId,
    runId: "r-1",
    stepId: "form",
    authorization: "Bearer run-token",
    clock: new PausableDeadline(60_000, () => "late"),
    signal: new AbortController().signal,
    traceContext: ROOT_CONTEXT,
    masking: TaskMasking.NONE,
  });

  it("elicitation - the one call in flight on the connection; none or several are refused", async () => {
    const calls = new CallsInFlight();
    expect(() => calls.originOf("everything", "sampling/createMessage")).toThrow(McpError);
    const first = origin("r-1:form:1");
    await calls.during(first, noop, async () => {
      expect(calls.originOf("everything", "sampling/createMessage")).toBe(first);
      await calls.during(origin("r-2:form:1"), noop, async () => {
        expect(() => calls.originOf("everything", "elicitation/create")).toThrow(
          /cannot tell which of 2 tool calls in flight on "everything"/,
        );
      });
      expect(calls.originOf("everything", "elicitation/create")).toBe(first);
    });
    expect(() => calls.originOf("everything", "elicitation/create")).toThrow(
      /no call to "everything" is in flight/,
    );
    first.clock.clear();
  });

  it("elicitation - a newer call of the same task abandons the earlier one, which no longer counts", async () => {
    const calls = new CallsInFlight();
    const abandoned: string[] = [];
    const earlier = origin("r-1:form:1");
    const later = origin("r-1:form:1");
    await calls.during(
      earlier,
      () => abandoned.push("earlier"),
      async () => {
        await calls.during(
          later,
          () => abandoned.push("later"),
          async () => {
            expect(abandoned).toEqual(["earlier"]);
            expect(calls.originOf("everything", "elicitation/create")).toBe(later);
          },
        );
      },
    );
    earlier.clock.clear();
    later.clock.clear();
  });
});

describe("elicitation - what loom submit --watch shows", () => {
  it("elicitation - the question's line names the fields to answer, required ones starred", () => {
    const line = statusLine({
      statusUpdate: {
        taskId: "r-1",
        contextId: "c-1",
        status: {
          state: TaskState.INPUT_REQUIRED,
          timestamp: "2026-12-01T13:00:00.000Z",
          message: {
            messageId: "m-1",
            role: "ROLE_AGENT",
            parts: [{ text: "step form: everything asks: Who are you?" }],
          },
        },
        metadata: {
          stepId: "form",
          elicitation: {
            server: "everything",
            message: QUESTION.message,
            requestedSchema: QUESTION.requestedSchema,
          },
        },
      },
    });
    expect(line).toBe(
      "13:00:00  input-required step form: everything asks: Who are you? [answer with --data {…} or --reject; fields: name* (string), email (string)]",
    );
  });
});
