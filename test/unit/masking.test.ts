import type { CallToolResult } from "@modelcontextprotocol/sdk/types.js";
import { describe, expect, it } from "vitest";
import type { Task } from "../../schemas/a2a.ts";
import { ErrorCode } from "../../schemas/errors.ts";
import type { Obligations } from "../../schemas/policy.ts";
import { LoomError } from "../../services/kit/index.ts";
import { ibanValid, luhnValid, MASK, maskText, maskValue } from "../../services/kit/masking.ts";
import { toolResultToArtifact } from "../../services/mcp-worker/artifacts.ts";
import { TaskMasking } from "../../services/mcp-worker/task-masking.ts";

const none: Obligations = { maskFields: [], maskPii: [], maskPatterns: [] };
const pii = (...kinds: Obligations["maskPii"]): Obligations => ({ ...none, maskPii: kinds });

describe("masking obligations", () => {
  it("masking - named fields at any depth, in structured content and in JSON text", () => {
    const contact = { name: "Ada", email: "ada@example.com", nested: [{ ssn: "900-12-3456", keep: 1 }] };
    const result: CallToolResult = {
      content: [{ type: "text", text: JSON.stringify(contact) }],
      structuredContent: contact,
    };
    const task: Task = {
      id: "t",
      contextId: "c",
      status: { state: "TASK_STATE_COMPLETED" },
      artifacts: [toolResultToArtifact("crm.get_contact", result)],
    };
    const [data, text] =
      new TaskMasking({ ...none, maskFields: ["email", "ssn"] }).task(task).artifacts?.[0]?.parts ?? [];
    const expected = { name: "Ada", email: MASK, nested: [{ ssn: MASK, keep: 1 }] };
    expect(data).toMatchObject({ data: expected });
    expect(JSON.parse((text as { text: string }).text)).toEqual(expected);
  });

  it("masking - detects email, SSN and phone numbers in free text", () => {
    const text = "Mail ada@example.com, SSN 900-12-3456, call +44 20 7946 0018 (order 12345)";
    expect(maskValue(text, pii("email", "ssn", "phone"))).toBe(
      `Mail ${MASK}, SSN ${MASK}, call ${MASK} (order 12345)`,
    );
  });

  it("masking - card numbers only when the Luhn check passes", () => {
    expect(luhnValid("4111111111111111")).toBe(true);
    expect(luhnValid("4111111111111112")).toBe(false);
    expect(maskValue("card 4111 1111 1111 1111 ref 4111 1111 1111 1112", pii("card"))).toBe(
      `card ${MASK} ref 4111 1111 1111 1112`,
    );
  });

  it("masking - IBANs only when the mod-97 check passes", () => {
    expect(ibanValid("DE89370400440532013000")).toBe(true);
    expect(ibanValid("DE89370400440532013001")).toBe(false);
    expect(maskValue("pay DE89 3704 0044 0532 0130 00 now", pii("iban"))).toBe(`pay ${MASK} now`);
    expect(maskValue("pay DE89370400440532013001", pii("iban"))).toBe("pay DE89370400440532013001");
  });

  it("masking - custom patterns, and nothing changes without obligations", () => {
    expect(maskValue({ note: "account ACCT-991 closed" }, { ...none, maskPatterns: ["ACCT-\\d+"] })).toEqual({
      note: `account ${MASK} closed`,
    });
    const task: Task = { id: "t", contextId: "c", status: { state: "TASK_STATE_COMPLETED" } };
    expect(new TaskMasking(none).task(task)).toBe(task);
    const error = new LoomError(ErrorCode.TOOL_ERROR, "ada@example.com");
    expect(TaskMasking.NONE.error(error)).toBe(error);
  });

  it("masking - named fields where free text embeds JSON, as in an error message", () => {
    const message = 'crm.get_contact reported an error: {"name":"Ada","ssn": "900-12-3456","age":36}';
    expect(maskText(message, { ...none, maskFields: ["ssn", "age"] })).toBe(
      `crm.get_contact reported an error: {"name":"Ada","ssn": "${MASK}","age":"${MASK}"}`,
    );
  });

  it("masking - an error's message and details, whatever threw it", () => {
    const masking = new TaskMasking(pii("email", "ssn"));
    const loom = masking.error(
      new LoomError(ErrorCode.TOOL_ERROR, "no access for ada@example.com", {
        details: { ssn: "900-12-3456" },
      }),
    ) as LoomError;
    expect(loom.toWire()).toEqual({
      code: ErrorCode.TOOL_ERROR,
      message: `no access for ${MASK}`,
      details: { ssn: MASK },
    });
    const caused = masking.error(
      new LoomError(ErrorCode.TOOL_ERROR, "crm failed", {
        cause: new TypeError("fetch failed for 900-12-3456"),
      }),
    ) as LoomError;
    // Still classifiable as a transport failure (call-policy.ts), with nothing personal left in it.
    expect(caused.cause).toBeInstanceOf(TypeError);
    expect((caused.cause as Error).message).toBe(`fetch failed for ${MASK}`);
    const internal = masking.error(new Error("bug near 900-12-3456")) as LoomError;
    expect(internal.code).toBe(ErrorCode.INTERNAL);
    expect((internal.cause as Error).message).toBe(`bug near ${MASK}`);
    expect((internal.cause as Error).stack).not.toContain("900-12-3456");
  });

  it("masking - elicitation text and sampling messages, a masked field's default dropped", () => {
    const masking = new TaskMasking({ ...none, maskFields: ["email"], maskPii: ["email"] });
    const asked = masking.elicitation({
      message: "Is ada@example.com still right?",
      requestedSchema: {
        type: "object",
        properties: {
          email: { type: "string", default: "ada@example.com" },
          note: { type: "string", description: "about grace@example.com", default: "x" },
        },
      },
    });
    expect(asked).toEqual({
      message: `Is ${MASK} still right?`,
      requestedSchema: {
        type: "object",
        properties: {
          email: { type: "string" },
          note: { type: "string", description: `about ${MASK}`, default: "x" },
        },
      },
    });
    const sampled = masking.sampling({
      maxTokens: 10,
      systemPrompt: "Contact ada@example.com",
      messages: [{ role: "user", content: { type: "text", text: '{"email":"ada@example.com"}' } }],
    });
    expect(sampled.systemPrompt).toBe(`Contact ${MASK}`);
    expect(sampled.messages[0]?.content).toEqual({ type: "text", text: `{"email":"${MASK}"}` });
  });
});
