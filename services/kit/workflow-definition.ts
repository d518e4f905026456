import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { parse as parseYaml } from "yaml";
import { ErrorCode } from "../../schemas/errors.ts";
import { type Workflow, WorkflowSchema } from "../../schemas/workflow.ts";
import { workflowIssues } from "../../schemas/workflow-issues.ts";
import { describeIssues, LoomError } from "./errors.ts";

/**
 * Checks a definition against the workflow schema, with an error (INVALID_WORKFLOW) that names
 * `source`, the step and the field. The orchestrator and the CLI check a definition the same way.
 */
export function checkWorkflowSchema(raw: unknown, source: string): Workflow {
  const parsed = WorkflowSchema.safeParse(raw);
  if (!parsed.success) {
    throw new LoomError(ErrorCode.INVALID_WORKFLOW, `${source}: ${describeIssues(workflowIssues(raw))}`);
  }
  return parsed.data;
}

/** Reads a YAML or JSON definition file and checks it against the workflow schema. */
export async function readWorkflowDefinition(path: string): Promise<Workflow> {
  if (!existsSync(path)) throw new LoomError(ErrorCode.INVALID_INPUT, `no workflow file at ${path}`);
  let raw: unknown;
  try {
    raw = parseYaml(await readFile(path, "utf8"));
  } catch (cause) {
    throw new LoomError(
      ErrorCode.INVALID_WORKFLOW,
      `${path} is not readable YAML or JSON: ${String(cause)}`,
      {
        cause,
      },
    );
  }
  return checkWorkflowSchema(raw, path);
}
