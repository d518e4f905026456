import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it, onTestFinished, vi } from "vitest";
import { z } from "zod";
import * as schemas from "../../schemas/index.ts";
import { JsonSchemaValidator } from "../../services/kit/json-schema.ts";

/**
 * The fixture corpus pins every wire shape: `test/fixtures/<Type>/*.json` must parse with
 * `<Type>Schema` from `schemas/index.ts`, and `test/fixtures/<Type>/invalid/*.json` must not.
 */
const FIXTURES = join(import.meta.dirname, "../fixtures");

const jsonFiles = (dir: string): string[] =>
  readdirSync(dir, { withFileTypes: true })
    .filter((entry) => entry.isFile() && entry.name.endsWith(".json"))
    .map((entry) => entry.name)
    .sort();

const readJson = (file: string): unknown => JSON.parse(readFileSync(file, "utf8"));

function schemaFor(type: string): z.ZodType {
  const schema = (schemas as Record<string, unknown>)[`${type}Schema`];
  if (!(schema instanceof z.ZodType)) {
    throw new Error(`test/fixtures/${type} has no ${type}Schema exported from schemas/index.ts`);
  }
  return schema;
}

const types = readdirSync(FIXTURES, { withFileTypes: true })
  .filter((entry) => entry.isDirectory())
  .map((entry) => entry.name)
  .sort();

const valid = types.flatMap((type) =>
  jsonFiles(join(FIXTURES, type)).map((name) => ({ type, name, file: join(FIXTURES, type, name) })),
);
const invalid = types.flatMap((type) =>
  jsonFiles(join(FIXTURES, type, "invalid")).map((name) => ({
    type,
    name,
    file: join(FIXTURES, type, "invalid", name),
  })),
);

describe("schema fixture corpus", () => {
  it("fixtures - cover the wire shapes, each with valid and invalid examples", () => {
    expect(types).toEqual(
      expect.arrayContaining([
        "AuditRecord",
        "McpServerConfig",
        "PolicyDecision",
        "PolicyDecisionRequest",
        "RunEvent",
        "RunSubmission",
        "ToolCall",
        "Workflow",
      ]),
    );
    for (const type of types) {
      schemaFor(type);
      expect(valid.filter((fixture) => fixture.type === type).length, type).toBeGreaterThan(0);
      expect(invalid.filter((fixture) => fixture.type === type).length, type).toBeGreaterThan(0);
    }
  });

  it.each(valid)("fixtures - $type/$name is accepted", ({ type, file }) => {
    const result = schemaFor(type).safeParse(readJson(file));
    expect(result.error?.issues ?? []).toEqual([]);
    expect(result.success).toBe(true);
  });

  it.each(valid)("fixtures - $type/$name is accepted by the generated JSON Schema", ({ type, file }) => {
    // Ajv warns that it cannot check zod's `format: "base64"`; every other keyword is enforced.
    const warn = vi.spyOn(console, "warn").mockImplementation(() => undefined);
    onTestFinished(() => warn.mockRestore());
    const jsonSchema = z.toJSONSchema(schemaFor(type), { io: "input" }) as Record<string, unknown>;
    expect(() => new JsonSchemaValidator().assertValid(jsonSchema, readJson(file), file)).not.toThrow();
  });

  it.each(invalid)("fixtures - $type/invalid/$name is refused", ({ type, file }) => {
    const result = schemaFor(type).safeParse(readJson(file));
    expect(result.success).toBe(false);
  });
});
