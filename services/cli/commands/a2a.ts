import { randomUUID } from "node:crypto";
import { AgentCard, SendMessageRequest, TaskState } from "@a2a-js/sdk";
import { ClientFactory } from "@a2a-js/sdk/client";
import { ErrorCode } from "../../../schemas/errors.ts";
import { LoomError } from "../../kit/index.ts";
import { ExitCode } from "../exit-codes.ts";
import { formatJson } from "../render.ts";
import { readInput } from "./submit.ts";

/** `loom agents card [--url]`: an A2A Agent Card, Loom's own or any agent's. */
export async function agentsCardCommand(options: { url: string }): Promise<ExitCode> {
  const url = `${options.url.replace(/\/$/, "")}/.well-known/agent-card.json`;
  let response: Response;
  try {
    response = await fetch(url);
  } catch (cause) {
    throw new LoomError(ErrorCode.AGENT_UNAVAILABLE, `cannot reach ${url}: ${String(cause)}`, { cause });
  }
  if (!response.ok) throw new LoomError(ErrorCode.AGENT_UNAVAILABLE, `${url} answered ${response.status}`);
  console.log(formatJson(AgentCard.toJSON(AgentCard.fromJSON(await response.json()))));
  return ExitCode.OK;
}

/** `loom submit --a2a <url> <skill>`: drives any A2A agent: sends the input and follows the task. */
export async function submitA2aCommand(
  url: string,
  skill: string,
  options: { token: string | undefined; input: string | undefined; watch: boolean; json: boolean },
): Promise<ExitCode> {
  const client = await new ClientFactory().createFromUrl(url).catch((cause: unknown) => {
    throw new LoomError(
      ErrorCode.AGENT_UNAVAILABLE,
      `cannot read the Agent Card at ${url}: ${String(cause)}`,
      { cause },
    );
  });
  const request = SendMessageRequest.fromJSON({
    message: {
      messageId: randomUUID(),
      role: "ROLE_USER",
      parts: [{ data: await readInput(options.input) }],
      metadata: { skill },
    },
    ...(options.watch ? {} : { configuration: { returnImmediately: true } }),
  });
  const callOptions =
    options.token === undefined ? {} : { serviceParameters: { Authorization: `Bearer ${options.token}` } };
  let taskId = "";
  let state = TaskState.TASK_STATE_SUBMITTED;
  let output: unknown;
  for await (const event of client.sendMessageStream(request, callOptions)) {
    const payload = event.payload;
    if (payload?.$case === "task") {
      taskId = payload.value.id;
      state = payload.value.status?.state ?? state;
      if (!options.json) console.log(`task ${taskId}`);
      if (!options.watch) break;
    } else if (payload?.$case === "statusUpdate") {
      state = payload.value.status?.state ?? state;
      const text = (payload.value.status?.message?.parts ?? [])
        .flatMap((part) => (part.content?.$case === "text" ? [part.content.value] : []))
        .join(" ");
      if (!options.json) console.log(`${stateName(state).padEnd(14)} ${text}`);
    } else if (payload?.$case === "artifactUpdate") {
      const content = payload.value.artifact?.parts[0]?.content;
      output = content?.$case === "data" ? content.value : content?.$case === "text" ? content.value : output;
    }
  }
  if (options.json)
    console.log(
      JSON.stringify({ taskId, state: stateName(state), ...(output === undefined ? {} : { output }) }),
    );
  else if (output !== undefined) console.log(`output:\n${formatJson(output)}`);
  if (!options.watch || state === TaskState.TASK_STATE_COMPLETED) return ExitCode.OK;
  return state === TaskState.TASK_STATE_REJECTED ? ExitCode.REJECTED : ExitCode.FAILED;
}

function stateName(state: TaskState): string {
  return (TaskState[state] ?? String(state)).replace("TASK_STATE_", "").toLowerCase().replaceAll("_", "-");
}
