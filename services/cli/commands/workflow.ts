import { stringify as toYaml } from "yaml";
import {
  WorkflowApplyContract,
  WorkflowGraphContract,
  WorkflowListContract,
  WorkflowShowContract,
} from "../../../schemas/contracts.ts";
import { Headers, Subjects } from "../../../schemas/subjects.ts";
import { request } from "../../kit/index.ts";
import { readWorkflowDefinition } from "../../kit/workflow-definition.ts";
import { toMermaid } from "../../orchestrator/mermaid.ts";
import { compileWorkflow } from "../../orchestrator/run-machine.ts";
import { parseWorkflow } from "../../orchestrator/workflow-catalog.ts";
import { bearerOf, connectCli } from "../connection.ts";
import { ExitCode } from "../exit-codes.ts";
import { table } from "../render.ts";
import { isWorkflowFile } from "../workflow-file.ts";

const TIMEOUT_MS = 10_000;

/**
 * `loom workflow apply <file>`: validates (schema and JSONata) and registers a workflow version;
 * policy decides who may (`workflow.apply`, admins by default).
 */
export async function workflowApplyCommand(
  file: string,
  options: { nats: string; token: string | undefined; json: boolean },
): Promise<ExitCode> {
  const definition = await readWorkflowDefinition(file);
  const nc = await connectCli(options.nats);
  try {
    const reply = await request(
      nc,
      Subjects.WORKFLOWS_APPLY,
      WorkflowApplyContract,
      { definition },
      { timeoutMs: TIMEOUT_MS, headers: { [Headers.AUTHORIZATION]: bearerOf(options.token) } },
    );
    if (options.json) {
      console.log(JSON.stringify(reply));
      return ExitCode.OK;
    }
    console.log(
      `${reply.id} v${reply.version} ${reply.created ? "registered" : "was already registered with this content"}`,
    );
    for (const warning of reply.warnings) console.error(`warning: ${warning}`);
    return ExitCode.OK;
  } finally {
    await nc.close();
  }
}

/**
 * `loom workflow graph <file|id>`: the compiled state machine as a Mermaid state diagram. A file is
 * checked and drawn here, offline (like `loom policy test`); a registered id is asked of Loom.
 */
export async function workflowGraphCommand(reference: string, options: { nats: string }): Promise<ExitCode> {
  if (isWorkflowFile(reference)) {
    const workflow = parseWorkflow(await readWorkflowDefinition(reference), reference);
    console.log(toMermaid(compileWorkflow(workflow)));
    return ExitCode.OK;
  }
  const nc = await connectCli(options.nats);
  try {
    const reply = await request(
      nc,
      Subjects.WORKFLOWS_GRAPH,
      WorkflowGraphContract,
      { workflow: reference },
      { timeoutMs: TIMEOUT_MS },
    );
    console.log(reply.mermaid);
    return ExitCode.OK;
  } finally {
    await nc.close();
  }
}

/** `loom workflow list`: every registered workflow with its versions. */
export async function workflowListCommand(options: { nats: string; json: boolean }): Promise<ExitCode> {
  const nc = await connectCli(options.nats);
  try {
    const { workflows } = await request(
      nc,
      Subjects.WORKFLOWS_LIST,
      WorkflowListContract,
      {},
      {
        timeoutMs: TIMEOUT_MS,
      },
    );
    if (options.json) console.log(JSON.stringify(workflows));
    else {
      const rows = workflows.map((workflow) => [
        workflow.id,
        workflow.versions.join(","),
        String(workflow.steps),
        workflow.description ?? "",
      ]);
      console.log(table(["WORKFLOW", "VERSIONS", "STEPS", "DESCRIPTION"], rows));
    }
    return ExitCode.OK;
  } finally {
    await nc.close();
  }
}

/** `loom workflow show <id> [--version N]`: a registered definition, as YAML (or JSON). */
export async function workflowShowCommand(
  id: string,
  options: { nats: string; version: number | undefined; json: boolean },
): Promise<ExitCode> {
  const nc = await connectCli(options.nats);
  try {
    const { workflow } = await request(
      nc,
      Subjects.WORKFLOWS_SHOW,
      WorkflowShowContract,
      { id, ...(options.version === undefined ? {} : { version: options.version }) },
      { timeoutMs: TIMEOUT_MS },
    );
    console.log(options.json ? JSON.stringify(workflow) : toYaml(workflow).trimEnd());
    return ExitCode.OK;
  } finally {
    await nc.close();
  }
}
