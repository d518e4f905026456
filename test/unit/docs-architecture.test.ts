import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { Buckets, Streams } from "../../schemas/subjects.ts";

const README = readFileSync(resolve(import.meta.dirname, "../../README.md"), "utf8");

/** The README's architecture section: its diagram and the notes under it. */
function architectureSection(): string {
  const start = README.indexOf("## Architecture");
  const end = README.indexOf("\n## ", start + 1);
  return README.slice(start, end);
}

describe("docs - architecture diagram", () => {
  it("docs - the README's architecture names every stream and every KV bucket Loom uses", () => {
    const section = architectureSection();
    const missing = [...Object.values(Streams), ...Object.values(Buckets)].filter(
      (name) => !section.includes(name),
    );
    expect(missing).toEqual([]);
  });

  it("docs - the architecture comes before the first workflow, near the top", () => {
    expect(README.indexOf("## Architecture")).toBeGreaterThan(0);
    expect(README.indexOf("## Architecture")).toBeLessThan(README.indexOf("## Your first workflow"));
    expect(Buffer.byteLength(README)).toBeLessThan(15 * 1024);
  });
});
