import { WorkflowApplyContract, WorkflowGraphContract } from "../../../schemas/contracts.ts";
import { Subjects } from "../../../schemas/subjects.ts";
import { request } from "../../kit/index.ts";
import { readWorkflowDefinition } from "../../kit/workflow-definition.ts";
import { connectCli } from "../connection.ts";
import { ExitCode } from "../exit-codes.ts";
import { isWorkflowFile } from "../workflow-file.ts";

const TIMEOUT_MS = 10_000;

/** `loom workflow apply <file>`: validates (schema and JSONata) and registers a workflow version. */
export async function workflowApplyCommand(
  file: string,
  options: { nats: string; json: boolean },
): Promise<ExitCode> {
  const definition = await readWorkflowDefinition(file);
  const nc = await connectCli(options.nats);
  try {
    const reply = await request(
      nc,
      Subjects.WORKFLOWS_APPLY,
      WorkflowApplyContract,
      { definition },
      { timeoutMs: TIMEOUT_MS },
    );
    console.log(
      options.json
        ? JSON.stringify(reply)
        : `${reply.id} v${reply.version} ${reply.created ? "registered" : "was already registered with this content"}`,
    );
    return ExitCode.OK;
  } finally {
    await nc.close();
  }
}

/** `loom workflow graph <file|id>`: the compiled state machine as a Mermaid state diagram. */
export async function workflowGraphCommand(reference: string, options: { nats: string }): Promise<ExitCode> {
  const workflow = isWorkflowFile(reference) ? await readWorkflowDefinition(reference) : reference;
  const nc = await connectCli(options.nats);
  try {
    const reply = await request(
      nc,
      Subjects.WORKFLOWS_GRAPH,
      WorkflowGraphContract,
      { workflow },
      { timeoutMs: TIMEOUT_MS },
    );
    console.log(reply.mermaid);
    return ExitCode.OK;
  } finally {
    await nc.close();
  }
}
