import { randomUUID } from "node:crypto";
import type { Client } from "@a2a-js/sdk/client";
import type { Artifact, Part } from "../../../schemas/a2a.ts";
import { ErrorCode } from "../../../schemas/errors.ts";
import { type Logger, LoomError } from "../../kit/index.ts";
import { artifactValue } from "../artifact-value.ts";
import { AGENT_CARD_PATH } from "./delegate-urls.ts";
import type { OutboundCredentials } from "./outbound-credentials.ts";
import { allowListedFetch } from "./outbound-fetch.ts";
import type { OutboundAllowList } from "./outbound-url.ts";

/** How a remote task ended for now: done with a result, or waiting for an answer. */
export type RemoteOutcome =
  | { kind: "completed"; value: unknown }
  | { kind: "input-required"; remoteTaskId: string; prompt: string };

/** The A2A SDK, loaded at the first delegation: most orchestrators never delegate, and all start. */
const loadSdk = () => import("@a2a-js/sdk");

/**
 * External A2A agents a `delegate: {url}` step hands work to: the Agent Card is fetched once per
 * URL, the message goes out streaming with the credentials configured for the URL it goes to (never
 * the run's own token), and the remote task's first artifact becomes the step's result.
 *
 * Every request (the card, then each call to the interface the card names) goes through the
 * allow-list `LOOM_A2A_DELEGATE_ALLOW` and follows no redirect. A request that fails in any other
 * way (refused connection, timeout, an HTTP error, an answer that is not A2A) fails the step with
 * one and the same message, the detail going to this service's log only: the run's caller must not
 * learn from it which ports are open behind the URL.
 */
export class RemoteAgents {
  readonly #credentials: OutboundCredentials;
  readonly #allowList: OutboundAllowList;
  readonly #log: Logger;
  readonly #clients = new Map<string, Promise<Client>>();

  constructor(options: {
    /** The `Authorization` value to send to each URL prefix. */
    credentials: OutboundCredentials;
    allowList: OutboundAllowList;
    log: Logger;
  }) {
    this.#credentials = options.credentials;
    this.#allowList = options.allowList;
    this.#log = options.log;
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
    await this.#allowList.check(options.url);
    const client = await this.#client(options.url, options.signal);
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
    const stream = client.sendMessageStream(request, { signal: options.signal });
    for await (const event of this.#unrevealing(options.url, stream)) {
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

  /** The client of the agent at `url`; its card is read under `signal`, the step's that reads it first. */
  #client(url: string, signal: AbortSignal): Promise<Client> {
    let client = this.#clients.get(url);
    if (client === undefined) {
      client = import("@a2a-js/sdk/client").then(
        ({ ClientFactory, DefaultAgentCardResolver, JsonRpcTransportFactory, RestTransportFactory }) => {
          const fetchImpl = allowListedFetch(this.#allowList);
          const factory = new ClientFactory({
            cardResolver: new DefaultAgentCardResolver({
              fetchImpl: (input, init) => fetchImpl(input, { ...init, signal }),
            }),
            transports: [
              new JsonRpcTransportFactory({ fetchImpl: this.#credentials.attachTo(fetchImpl) }),
              new RestTransportFactory({ fetchImpl: this.#credentials.attachTo(fetchImpl) }),
            ],
          });
          return factory.createFromUrl(url, AGENT_CARD_PATH).catch((cause: unknown) => {
            this.#clients.delete(url);
            throw this.#failure(url, cause);
          });
        },
      );
      this.#clients.set(url, client);
    }
    return client;
  }

  /** The remote task's events, with any failure to get them turned into `#failure`'s. */
  async *#unrevealing<Event>(url: string, events: AsyncIterable<Event>): AsyncGenerator<Event> {
    try {
      yield* events;
    } catch (cause) {
      throw this.#failure(url, cause);
    }
  }

  /**
   * A refusal by the allow-list as it is; anything else as one message whatever happened, with the
   * detail in the log: connection refused, timeout and HTTP error must read the same to the caller.
   */
  #failure(url: string, cause: unknown): LoomError {
    if (cause instanceof LoomError && cause.code === this.#allowList.target.code) return cause;
    this.#log.warn({ err: cause, url }, "remote A2A agent failed");
    return new LoomError(
      ErrorCode.AGENT_UNAVAILABLE,
      `the A2A agent at ${url} could not be reached or did not answer as an A2A agent (the orchestrator's log says why)`,
    );
  }
}
