import type { z } from "zod";
import { StepSchemas, WorkflowSchema, WorkStepSchemas } from "./workflow.ts";

type Issue = z.core.$ZodIssue;
type ObjectSchema = z.ZodObject<z.ZodRawShape>;

/**
 * The issues a definition's author should see. zod reports a value that matches no branch of a
 * union as "Invalid input"; a step is a union of kinds, so this picks the kind the step names (by
 * its `call`, `read`, … key) and reports that kind's issues, and an unknown field by name with the
 * fields that kind takes. Other unions report the branch of the value's type that came closest.
 */
export function workflowIssues(raw: unknown): Issue[] {
  const parsed = WorkflowSchema.safeParse(raw);
  return parsed.success ? [] : explain(parsed.error.issues, raw, [], WorkflowSchema);
}

function explain(
  issues: readonly Issue[],
  raw: unknown,
  prefix: PropertyKey[],
  schema?: ObjectSchema,
): Issue[] {
  return issues.flatMap((issue): Issue[] => {
    const path = [...prefix, ...issue.path];
    if (issue.code === "unrecognized_keys") {
      const owner = issue.path.length === 0 ? schema : stepSchemaAt(path, valueAt(raw, issue.path));
      return [unknownFields(issue, path, owner)];
    }
    if (issue.code !== "invalid_union" || issue.errors.length === 0) return [{ ...issue, path }];
    const value = valueAt(raw, issue.path);
    const stepKinds = stepKindsAt(path);
    if (stepKinds !== undefined && isObject(value)) return explainStep(value, path, stepKinds);
    return explain(closestOption(issue.errors), value, path);
  });
}

/** The schema of the step at a path, when a step stands there and names one kind. */
function stepSchemaAt(path: PropertyKey[], value: unknown): ObjectSchema | undefined {
  const kinds = stepKindsAt(path);
  if (kinds === undefined || !isObject(value)) return undefined;
  const named = Object.keys(value).filter((key) => key in kinds);
  return named.length === 1 ? kinds[named[0] as string] : undefined;
}

/** Which step kinds may stand at a path: any at `steps.N`, only work steps in `parallel` and `onError`. */
function stepKindsAt(path: PropertyKey[]): Record<string, ObjectSchema> | undefined {
  const [container, index] = path.slice(-2);
  if (typeof index !== "number") return undefined;
  if (container === "parallel" || (container === "steps" && path.length > 2)) return WorkStepSchemas;
  return container === "steps" ? StepSchemas : undefined;
}

function explainStep(
  step: Record<string, unknown>,
  path: PropertyKey[],
  kinds: Record<string, ObjectSchema>,
): Issue[] {
  const schema = stepSchemaAt(path, step);
  if (schema === undefined) {
    const named = Object.keys(step).filter((key) => key in StepSchemas);
    const unknown = Object.keys(step).filter(
      (key) => !Object.values(StepSchemas).some((kind) => key in kind.shape),
    );
    const found = [
      named.length === 0 ? "it has none" : `it has ${named.join(" and ")}`,
      ...unknown.map((key) => `unknown field "${key}"`),
    ].join("; ");
    const where = kinds === StepSchemas ? "a step" : "a parallel branch or compensation step";
    return [
      {
        code: "custom",
        path,
        input: step,
        message: `${where} needs exactly one of ${Object.keys(kinds).join(", ")} (${found})`,
      },
    ];
  }
  const parsed = schema.safeParse(step);
  return parsed.success ? [] : explain(parsed.error.issues, step, path, schema);
}

/** An unknown field, named, with the fields the object takes. */
function unknownFields(
  issue: z.core.$ZodIssueUnrecognizedKeys,
  path: PropertyKey[],
  schema?: ObjectSchema,
): Issue {
  const keys = issue.keys.map((key) => `"${key}"`).join(", ");
  const known = schema === undefined ? "" : ` (it takes ${Object.keys(schema.shape).join(", ")})`;
  return { ...issue, path, message: `unknown field${issue.keys.length > 1 ? "s" : ""} ${keys}${known}` };
}

/** Of a union's branches, one the value's type fits (not refused at its root), with the fewest issues. */
function closestOption(options: readonly (readonly Issue[])[]): readonly Issue[] {
  const fitting = options.filter(
    (option) => !option.some((issue) => issue.path.length === 0 && issue.code === "invalid_type"),
  );
  const candidates = fitting.length > 0 ? fitting : options;
  return candidates.reduce((best, option) => (option.length < best.length ? option : best));
}

function valueAt(value: unknown, path: readonly PropertyKey[]): unknown {
  return path.reduce<unknown>(
    (current, key) =>
      isObject(current) || Array.isArray(current)
        ? (current as Record<PropertyKey, unknown>)[key]
        : undefined,
    value,
  );
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
