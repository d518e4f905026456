import { randomUUID } from "node:crypto";
import type { Client } from "@a2a-js/sdk/client";
import type { Artifact, Part } from "../../../schemas/a2a.ts";
import { ErrorCode } from "../../../schemas/errors.ts";
import { LoomError } from "../../kit/index.ts";
import { artifactValue } from "../artifact-value.ts";

/** How a remote task ended for now: done with a result, or waiting for an answer. */
export type RemoteOutcome =
  | { kind: "completed"; value: unknown }
  | { kind: "input-required"; remoteTaskId: string; prompt: string };

/** The A2A SDK, loaded at the first delegation: most orchestrators never delegate, and all start. */
const loadSdk = () => import("@a2a-js/sdk");

/**
 * External A2A agents a `delegate: {url}` step hands work to: the Agent Card is fetched once per
 * URL, the message goes out streaming with the credentials configured for that URL (never the
 * run's own token), and the remote task's first artifact becomes the step's result.
 */
export class RemoteAgents {
  readonly #credentials: Record<string, string>;
  readonly #clients = new Map<string, Promise<Client>>();

  /** `credentials` maps URL prefixes to the `Authorization` value to send there. */
  constructor(credentials: Record<string, string>) {
    this.#credentials = credentials;
  }

  /**
   * Sends the message (or, with `followUp`, the answer to the remote task that asked for input)
   * and follows the task: its result when it completes, its prompt when it asks for input. The
   * first message's id is `messageId`, the same whenever this step's attempt is sent again.
   */
  async run(options: {
    url: string;
    messageId: string;
    skill: string | undefined;
    part: Part;
    followUp?: { remoteTaskId: string; part: Part } | undefined;
    signal: AbortSignal;
    onStatus: (text: string) => Promise<void>;
  }): Promise<RemoteOutcome> {
    const { Artifact: ArtifactCodec, TaskState: SdkTaskState, SendMessageRequest } = await loadSdk();
    const finalStates = new Set([
      SdkTaskState.TASK_STATE_COMPLETED,
      SdkTaskState.TASK_STATE_FAILED,
      SdkTaskState.TASK_STATE_CANCELED,
      SdkTaskState.TASK_STATE_REJECTED,
    ]);
    const client = await this.#client(options.url);
    const authorization = Object.entries(this.#credentials).find(([prefix]) =>
      options.url.startsWith(prefix),
    )?.[1];
    const { followUp } = options;
    const request = SendMessageRequest.fromJSON({
      message:
        followUp === undefined
          ? {
              messageId: options.messageId,
              role: "ROLE_USER",
              parts: [options.part],
              ...(options.skill === undefined ? {} : { metadata: { skill: options.skill } }),
            }
          : {
              messageId: randomUUID(),
              role: "ROLE_USER",
              taskId: followUp.remoteTaskId,
              parts: [followUp.part],
            },
    });
    let taskId = followUp?.remoteTaskId ?? "";
    let state = SdkTaskState.TASK_STATE_SUBMITTED;
    let detail = "";
    const artifacts: Artifact[] = [];
    const stream = client.sendMessageStream(request, {
      signal: options.signal,
      ...(authorization === undefined ? {} : { serviceParameters: { Authorization: authorization } }),
    });
    for await (const event of stream) {
      const payload = event.payload;
      if (payload?.$case === "task") {
        taskId = payload.value.id;
        state = payload.value.status?.state ?? state;
        artifacts.push(
          ...payload.value.artifacts.map((artifact) => ArtifactCodec.toJSON(artifact) as Artifact),
        );
      } else if (payload?.$case === "statusUpdate") {
        state = payload.value.status?.state ?? state;
        const parts = payload.value.status?.message?.parts ?? [];
        detail = parts
          .flatMap((part) => (part.content?.$case === "text" ? [part.content.value] : []))
          .join(" ");
        await options.onStatus(
          `${SdkTaskState[state]?.replace("TASK_STATE_", "").toLowerCase() ?? "update"}: ${detail}`,
        );
      } else if (payload?.$case === "artifactUpdate" && payload.value.artifact !== undefined) {
        artifacts.push(ArtifactCodec.toJSON(payload.value.artifact) as Artifact);
      }
      if (finalStates.has(state) || state === SdkTaskState.TASK_STATE_INPUT_REQUIRED) break;
    }
    if (state === SdkTaskState.TASK_STATE_COMPLETED)
      return { kind: "completed", value: artifactValue(artifacts.at(-1)) };
    if (state === SdkTaskState.TASK_STATE_INPUT_REQUIRED)
      return { kind: "input-required", remoteTaskId: taskId, prompt: detail };
    throw new LoomError(
      ErrorCode.TOOL_ERROR,
      `the agent at ${options.url} ended its task ${SdkTaskState[state] ?? state}: ${detail}`,
    );
  }

  #client(url: string): Promise<Client> {
    let client = this.#clients.get(url);
    if (client === undefined) {
      client = import("@a2a-js/sdk/client").then(({ ClientFactory }) =>
        new ClientFactory().createFromUrl(url).catch((cause: unknown) => {
          this.#clients.delete(url);
          throw new LoomError(
            ErrorCode.AGENT_UNAVAILABLE,
            `cannot read the Agent Card at ${url}: ${String(cause)}`,
            { cause },
          );
        }),
      );
      this.#clients.set(url, client);
    }
    return client;
  }
}
