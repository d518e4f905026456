import { describe, expect, it } from "vitest";
import { createActor } from "xstate";
import type { Obligations } from "../../schemas/policy.ts";
import { type RunEvent, type RunEventMetadata, RunEventSchema, type RunRecord } from "../../schemas/run.ts";
import { maskedEvent, viewOfRun } from "../../services/orchestrator/run-access.ts";
import { compileWorkflow } from "../../services/orchestrator/run-machine.ts";

const masks: Obligations = { maskFields: ["ssn"], maskPii: ["email"], maskPatterns: [] };

const definition = {
  id: "hello",
  version: 1,
  steps: [{ id: "now", call: "time.get_time" }],
} as NonNullable<RunRecord["definition"]>;

/** The machine of a run whose one step failed with personal data in its error. */
function failedSnapshot(): unknown {
  const actor = createActor(compileWorkflow(definition), { input: { input: {} } }).start();
  actor.send({
    type: "STEP.FAILED",
    stepId: "now",
    error: { code: "TOOL_ERROR", message: "ada@example.com refused" },
  });
  return actor.getPersistedSnapshot();
}

const record: RunRecord = {
  runId: "run-123-45-6789",
  contextId: "ctx-1",
  workflowId: "hello",
  workflowVersion: 1,
  definition,
  input: { note: "write to ada@example.com" },
  state: "TASK_STATE_COMPLETED",
  snapshot: failedSnapshot(),
  startedBy: "ann",
  output: { name: "Ada", ssn: "123-45-6789" },
  error: { code: "TOOL_ERROR", message: "ada@example.com refused" },
  pending: [],
  createdAt: "2026-12-06T01:00:00.000Z",
  updatedAt: "2026-12-06T01:00:01.000Z",
};

describe("run access - what a reader sees of a run", () => {
  it("run view - leaves out the snapshot and the definition", () => {
    const view = viewOfRun(record, undefined);
    expect(view).not.toHaveProperty("snapshot");
    expect(view).not.toHaveProperty("definition");
    expect(view.output).toEqual(record.output);
  });

  it("run view - masks the reader's fields and personal data in input, output and error, not its ids", () => {
    const view = viewOfRun(record, masks);
    expect(view.runId).toBe(record.runId);
    expect(view.input).toEqual({ note: "write to [masked]" });
    expect(view.output).toEqual({ name: "Ada", ssn: "[masked]" });
    expect(view.error?.message).toBe("[masked] refused");
    expect(view.steps).toEqual([
      {
        stepId: "now",
        kind: "call",
        target: "time.get_time",
        state: "failed",
        attempts: 1,
        error: { code: "TOOL_ERROR", message: "[masked] refused" },
      },
    ]);
  });

  it("run view - what a waiting run asks is masked for the reader, its answer schema keeps its shape", () => {
    const view = viewOfRun(record, masks, [
      {
        stepId: "now",
        kind: "elicitation",
        prompt: "Is ada@example.com right?",
        maskedPrompt: "Is ada@example.com right?",
        server: "crm",
        requestedSchema: {
          type: "object",
          properties: { ssn: { type: "string", default: "123-45-6789" } },
          required: ["ssn"],
        },
        roles: [],
        callerMayAnswer: true,
      },
    ]);
    expect(view.waiting).toEqual([
      {
        stepId: "now",
        kind: "elicitation",
        prompt: "Is [masked] right?",
        server: "crm",
        requestedSchema: { type: "object", properties: { ssn: { type: "string" } }, required: ["ssn"] },
        roles: [],
        callerMayAnswer: true,
      },
    ]);
  });

  it("run events - a status message and an artifact are masked for the reader, the task id is not", () => {
    const status: RunEvent = {
      statusUpdate: {
        taskId: "run-ada@example.com",
        contextId: "ctx-1",
        status: {
          state: "TASK_STATE_WORKING",
          message: { messageId: "m", role: "ROLE_AGENT", parts: [{ text: "mailing ada@example.com" }] },
        },
      },
    } as RunEvent;
    const artifact: RunEvent = {
      artifactUpdate: {
        taskId: "run-1",
        contextId: "ctx-1",
        artifact: { artifactId: "a", parts: [{ data: { ssn: "123-45-6789" } }] },
      },
    } as RunEvent;
    const maskedStatus = maskedEvent(status, masks);
    expect(JSON.stringify(maskedStatus)).toContain('"taskId":"run-ada@example.com"');
    expect(JSON.stringify(maskedStatus)).toContain("mailing [masked]");
    expect(JSON.stringify(maskedEvent(artifact, masks))).toContain('"ssn":"[masked]"');
    expect(maskedEvent(status, undefined)).toBe(status);
  });

  it("run events - an approval's prompt is shown to a masked reader as rendered from masked data", () => {
    const approvalAsked = (metadata: RunEventMetadata): RunEvent => ({
      statusUpdate: {
        taskId: "run-1",
        contextId: "ctx-1",
        status: {
          state: "TASK_STATE_INPUT_REQUIRED",
          message: { messageId: "m", role: "ROLE_AGENT", parts: [{ text: "Escalate 9876-54-321?" }] },
        },
        metadata,
      },
    });
    const asked = approvalAsked({
      stepId: "approve",
      roles: ["manager"],
      maskedText: "Escalate ]deksam[ for ada@example.com?",
    });
    const shown = maskedEvent(asked, masks);
    const texts = "statusUpdate" in shown ? shown.statusUpdate.status.message?.parts : undefined;
    // The masked rendering, with the reader's pattern masking on top; the raw text is gone.
    expect(texts).toEqual([{ text: "Escalate ]deksam[ for [masked]?" }]);
    expect(JSON.stringify(shown)).not.toContain("9876-54-321");
    expect(RunEventSchema.safeParse(shown).success).toBe(true);
    // Control: a reader with no masks sees the prompt as asked.
    expect(maskedEvent(asked, undefined)).toBe(asked);
    // An approval asked before prompts were rendered twice has no masked rendering: none is shown.
    const older = maskedEvent(approvalAsked({ stepId: "approve", roles: ["manager"] }), masks);
    expect(JSON.stringify(older)).toContain('"parts":[{"text":"[masked]"}]');
  });

  it("run view - an approval's prompt is shown to a masked reader as rendered from masked data", () => {
    const asked = {
      stepId: "approve",
      kind: "approval" as const,
      prompt: "Escalate 9876-54-321?",
      maskedPrompt: "Escalate ]deksam[?",
      roles: ["manager"],
      callerMayAnswer: true,
    };
    const { maskedPrompt: _masked, ...raw } = asked;
    expect(viewOfRun(record, masks, [asked]).waiting).toEqual([{ ...raw, prompt: "Escalate ]deksam[?" }]);
    expect(viewOfRun(record, undefined, [asked]).waiting).toEqual([raw]);
  });

  it("run events - an elicitation keeps a valid answer schema when a field is named like a masked one", () => {
    const asked: RunEvent = {
      statusUpdate: {
        taskId: "run-1",
        contextId: "ctx-1",
        status: { state: "TASK_STATE_INPUT_REQUIRED" },
        metadata: {
          elicitation: {
            server: "crm",
            message: "confirm ada@example.com",
            requestedSchema: {
              type: "object",
              properties: {
                ssn: { type: "string", description: "for ada@example.com", default: "123-45-6789" },
                contact: { type: "string", enum: ["ada@example.com"], default: "ada@example.com" },
              },
              required: ["ssn"],
            },
          },
        },
      },
    };
    const masked = maskedEvent(asked, masks);
    expect(RunEventSchema.safeParse(masked).success).toBe(true);
    const text = JSON.stringify(masked);
    expect(text).not.toContain("ada@example.com");
    expect(text).not.toContain("123-45-6789");
    expect(text).toContain('"required":["ssn"]');
  });
});
