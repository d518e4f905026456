import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { CONFIGURATION_DOC, renderConfigurationDoc } from "../../scripts/config-reference.ts";

describe("docs - configuration reference", () => {
  it("docs - docs/configuration.md is what the config schemas render (run `npm run docs:config`)", () => {
    expect(readFileSync(CONFIGURATION_DOC, "utf8")).toBe(renderConfigurationDoc());
  });
});
