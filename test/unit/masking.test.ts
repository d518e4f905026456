import type { CallToolResult } from "@modelcontextprotocol/sdk/types.js";
import { describe, expect, it } from "vitest";
import type { Obligations } from "../../schemas/policy.ts";
import { ibanValid, luhnValid, MASK, maskResult, maskValue } from "../../services/kit/masking.ts";

const none: Obligations = { maskFields: [], maskPii: [], maskPatterns: [] };
const pii = (...kinds: Obligations["maskPii"]): Obligations => ({ ...none, maskPii: kinds });

describe("masking obligations", () => {
  it("masking - named fields at any depth, in structured content and in JSON text", () => {
    const contact = { name: "Ada", email: "ada@example.com", nested: [{ ssn: "900-12-3456", keep: 1 }] };
    const result: CallToolResult = {
      content: [{ type: "text", text: JSON.stringify(contact) }],
      structuredContent: contact,
    };
    const masked = maskResult(result, { ...none, maskFields: ["email", "ssn"] });
    expect(masked.structuredContent).toEqual({ name: "Ada", email: MASK, nested: [{ ssn: MASK, keep: 1 }] });
    expect(JSON.parse((masked.content[0] as { text: string }).text)).toEqual(masked.structuredContent);
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
    const result: CallToolResult = { content: [{ type: "text", text: "ada@example.com" }] };
    expect(maskResult(result, none)).toBe(result);
  });
});
