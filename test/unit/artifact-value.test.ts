import { describe, expect, it } from "vitest";
import { artifactValue } from "../../services/orchestrator/artifact-value.ts";

const text = (value: string) => artifactValue({ artifactId: "a", parts: [{ text: value }] });

describe("artifact value - a step's result as $steps sees it", () => {
  it.each([
    [' {"id": 1}', { id: 1 }],
    ["[1, 2]", [1, 2]],
    ['"quoted"', "quoted"],
    ["-2.5", -2.5],
    ["\n42", 42],
    ["true", true],
    ["null", null],
  ])("artifact value - JSON text %j is parsed", (raw, parsed) => {
    expect(text(raw)).toEqual(parsed);
  });

  it.each(["Echo: step a", "123 apples", "{not json", "nullish", ""])(
    "artifact value - text %j that is not JSON stays text",
    (raw) => {
      expect(text(raw)).toBe(raw);
    },
  );

  it("artifact value - a data part wins over text", () => {
    expect(artifactValue({ artifactId: "a", parts: [{ text: "x" }, { data: { y: 1 } }] })).toEqual({ y: 1 });
  });
});
