import { describe, expect, it } from "vitest";
import { DurationSchema } from "../../schemas/duration.ts";

describe("duration", () => {
  it.each([
    ["250ms", 250],
    ["0ms", 0],
    ["5s", 5_000],
    ["2m", 120_000],
    ["1h", 3_600_000],
    ["90s", 90_000],
  ])("duration - %s is %i ms", (text, ms) => {
    expect(DurationSchema.parse(text)).toBe(ms);
  });

  it("duration - a number is already milliseconds", () => {
    expect(DurationSchema.parse(1500)).toBe(1500);
    expect(DurationSchema.parse(0)).toBe(0);
  });

  it.each(["5", "5 s", " 5s", "5S", "1.5s", "-5s", "5d", "s", "", "5sec"])(
    "duration - refuses the string %j",
    (text) => {
      expect(DurationSchema.safeParse(text).success).toBe(false);
    },
  );

  it.each([-1, 1.5, Number.NaN, Number.POSITIVE_INFINITY])("duration - refuses the number %d", (value) => {
    expect(DurationSchema.safeParse(value).success).toBe(false);
  });

  it("duration - refuses other types", () => {
    expect(DurationSchema.safeParse(null).success).toBe(false);
    expect(DurationSchema.safeParse({ s: 5 }).success).toBe(false);
  });

  it("duration - the error tells the user how to write one", () => {
    const result = DurationSchema.safeParse("5 seconds");
    expect(JSON.stringify(result.error?.issues)).toContain('for example \\"5s\\"');
  });
});
