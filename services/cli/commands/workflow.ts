import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { parse as parseYaml } from "yaml";
import { WorkflowApplyContract, WorkflowGraphContract } from "../../../schemas/contracts.ts";
import { ErrorCode } from "../../../schemas/errors.ts";
import { Headers, Subjects } from "../../../schemas/subjects.ts";
import { LoomError, request } from "../../kit/index.ts";
import { bearerOf, connectCli } from "../connection.ts";
import { ExitCode } from "../exit-codes.ts";

const TIMEOUT_MS = 10_000;

/**
 * `loom workflow apply <file>`: validates (schema and JSONata) and registers a workflow version;
 * policy decides who may (`workflow.apply`, admins by default).
 */
export async function workflowApplyCommand(
  file: string,
  options: { nats: string; token: string | undefined; json: boolean },
): Promise<ExitCode> {
  const definition = await readDefinition(file);
  const nc = await connectCli(options.nats);
  try {
    const reply = await request(
      nc,
      Subjects.WORKFLOWS_APPLY,
      WorkflowApplyContract,
      { definition },
      { timeoutMs: TIMEOUT_MS, headers: { [Headers.AUTHORIZATION]: bearerOf(options.token) } },
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
  const workflow = isFile(reference)
    ? ((await readDefinition(reference)) as Record<string, unknown>)
    : reference;
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

function isFile(reference: string): boolean {
  return /\.(ya?ml|json)$/i.test(reference) || reference.includes("/");
}

async function readDefinition(file: string): Promise<unknown> {
  if (!existsSync(file)) throw new LoomError(ErrorCode.INVALID_INPUT, `no workflow file at ${file}`);
  try {
    return parseYaml(await readFile(file, "utf8"));
  } catch (cause) {
    throw new LoomError(
      ErrorCode.INVALID_WORKFLOW,
      `${file} is not readable YAML or JSON: ${String(cause)}`,
      { cause },
    );
  }
}
