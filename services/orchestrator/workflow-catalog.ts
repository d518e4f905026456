import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { parse as parseYaml } from "yaml";
import type { z } from "zod";
import { ErrorCode } from "../../schemas/errors.ts";
import { type Workflow, WorkflowSchema } from "../../schemas/workflow.ts";
import { describeIssues, LoomError } from "../kit/index.ts";
import { checkExpressions } from "./expressions.ts";
import { assertDefinitionSizeWithin, assertStepsWithin, type RunLimits } from "./limits.ts";

/** Validates a definition (schema and expressions), with errors that name the offending field. */
export function parseWorkflow(raw: unknown, source: string): Workflow {
  const parsed = WorkflowSchema.safeParse(raw);
  if (!parsed.success) {
    throw new LoomError(
      ErrorCode.INVALID_WORKFLOW,
      `${source}: ${describeIssues(closestIssues(parsed.error.issues))}`,
    );
  }
  checkExpressions(parsed.data);
  return parsed.data;
}

type Issue = z.core.$ZodIssue;

/**
 * A step is a union of kinds, for which zod says only "Invalid input". Report instead the issues
 * of the kind that came closest (fewest issues), so the message names the offending field.
 */
function closestIssues(issues: readonly Issue[], prefix: PropertyKey[] = []): Issue[] {
  return issues.flatMap((issue) => {
    const path = [...prefix, ...issue.path];
    if (issue.code !== "invalid_union" || issue.errors.length === 0) return [{ ...issue, path }];
    const closest = issue.errors.reduce((best, option) => (option.length < best.length ? option : best));
    return closest.length === 0 ? [{ ...issue, path }] : closestIssues(closest, path);
  });
}

/** Reads a YAML or JSON definition file. */
export async function readWorkflowFile(path: string): Promise<Workflow> {
  let raw: unknown;
  try {
    raw = parseYaml(await readFile(path, "utf8"));
  } catch (cause) {
    throw new LoomError(
      ErrorCode.INVALID_WORKFLOW,
      `${path} is not readable YAML or JSON: ${String(cause)}`,
      { cause },
    );
  }
  return parseWorkflow(raw, path);
}

/** The registered workflows, by id and version. */
export class WorkflowCatalog {
  readonly #versions = new Map<string, Map<number, Workflow>>();
  readonly #listeners: Array<(id: string) => void> = [];
  readonly #limits: RunLimits;

  constructor(limits: RunLimits) {
    this.#limits = limits;
  }

  /** Validates a definition a caller sent (to apply, graph or run inline), within the size and step limits. */
  parse(raw: unknown, source: string): Workflow {
    assertDefinitionSizeWithin(raw, this.#limits);
    const workflow = parseWorkflow(raw, source);
    assertStepsWithin(workflow, this.#limits);
    return workflow;
  }

  /** Called with each workflow id the first time any version of it is registered. */
  onNewWorkflow(listener: (id: string) => void): void {
    this.#listeners.push(listener);
    for (const id of this.#versions.keys()) listener(id);
  }

  /** Reads every definition in a folder; an invalid one stops the start with its file and field. */
  static async readDirectory(dir: string): Promise<Workflow[]> {
    const names = (await readdir(dir)).filter((name) => /\.(ya?ml|json)$/.test(name)).sort();
    return Promise.all(names.map((name) => readWorkflowFile(join(dir, name))));
  }

  register(workflow: Workflow): void {
    const known = this.#versions.get(workflow.id);
    const versions = known ?? new Map<number, Workflow>();
    versions.set(workflow.version, workflow);
    this.#versions.set(workflow.id, versions);
    if (known === undefined) for (const listener of this.#listeners) listener(workflow.id);
  }

  ids(): string[] {
    return [...this.#versions.keys()].sort();
  }

  /** `hello` is the latest version, `hello@2` a pinned one; an inline definition is validated as is. */
  resolve(reference: string | Workflow): Workflow {
    if (typeof reference !== "string") return this.parse(reference, "inline workflow");
    const [id = "", pinned] = reference.split("@");
    const versions = this.#versions.get(id);
    if (versions === undefined) {
      const known = this.ids().join(", ") || "none";
      throw new LoomError(
        ErrorCode.UNKNOWN_WORKFLOW,
        `no workflow "${id}" is registered (registered: ${known})`,
      );
    }
    const version = pinned === undefined ? Math.max(...versions.keys()) : Number(pinned);
    const workflow = versions.get(version);
    if (workflow === undefined) {
      throw new LoomError(ErrorCode.UNKNOWN_WORKFLOW, `workflow "${id}" has no version ${pinned}`);
    }
    return workflow;
  }
}
