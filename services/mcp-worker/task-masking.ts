import type { CreateMessageRequest, ElicitRequest } from "@modelcontextprotocol/sdk/types.js";
import type { Part, Task } from "../../schemas/a2a.ts";
import type { Obligations } from "../../schemas/policy.ts";
import { LoomError, toWireError } from "../kit/index.ts";
import { hasMasks, maskText, maskValue } from "../kit/masking.ts";
import type { ObservableConnection } from "./observed-call.ts";

/** The calls a task's work makes on a server. */
type TaskConnection = Pick<ObservableConnection, "callTool" | "readResource" | "getPrompt" | "withClient">;

/** Media types whose raw bytes are text, and so can carry personal data a pattern finds. */
const TEXTUAL = /^(text\/|application\/(json|xml|[\w.+-]+\+(json|xml))\b)/;

/**
 * Everything that leaves the worker about one task, masked as the task's grant obliges: its
 * result or error (before it is stored for replays and before the reply), the progress and log
 * messages the server sends meanwhile, and the text of the sampling and elicitation requests the
 * server makes during the call. Every path out of the worker for a task goes through its
 * TaskMasking, so a caller whose data is masked sees masked data whichever path it takes.
 */
export class TaskMasking {
  /** For a task without obligations: everything passes unchanged. */
  static readonly NONE = new TaskMasking({ maskFields: [], maskPii: [], maskPatterns: [] });

  readonly #obligations: Obligations;
  readonly #active: boolean;

  constructor(obligations: Obligations) {
    this.#obligations = obligations;
    this.#active = hasMasks(obligations);
  }

  /** Free text, or text that is JSON (then named fields apply too). */
  text(text: string): string {
    return this.#active ? maskText(text, this.#obligations) : text;
  }

  /** Any JSON value: named fields at any depth, patterns in every string. */
  value(value: unknown): unknown {
    return this.#active ? maskValue(value, this.#obligations) : value;
  }

  /** Runs the task's work and masks what comes out of it, a result or an error. */
  async outcome(work: () => Promise<Task>): Promise<Task> {
    try {
      return this.task(await work());
    } catch (error) {
      throw this.error(error);
    }
  }

  task(task: Task): Task {
    if (!this.#active) return task;
    const message = task.status.message;
    return {
      ...task,
      status: {
        ...task.status,
        ...(message === undefined
          ? {}
          : { message: { ...message, parts: message.parts.map((p) => this.#part(p)) } }),
      },
      ...(task.artifacts === undefined
        ? {}
        : {
            artifacts: task.artifacts.map((artifact) => ({
              ...artifact,
              parts: artifact.parts.map((part) => this.#part(part)),
            })),
          }),
    };
  }

  /**
   * A thrown error as the caller may see it: its message, details and causes masked. The copy
   * keeps the classes and codes of the original and its causes, so what classifies failures
   * (a transport error behind a tool error, say) still can; a failure that is not a LoomError
   * becomes one with its code, keeping a masked copy as its cause for the worker's own log.
   */
  error(error: unknown): unknown {
    if (!this.#active) return error;
    if (error instanceof LoomError) {
      const copy = this.#copy(error) as LoomError;
      (copy as { details: unknown }).details =
        error.details === undefined ? undefined : this.value(error.details);
      return copy;
    }
    const wire = toWireError(error);
    return new LoomError(wire.code, this.text(wire.message), {
      ...(wire.details === undefined ? {} : { details: this.value(wire.details) as Record<string, unknown> }),
      cause: this.#copy(error),
    });
  }

  /**
   * The connection's calls, their failures masked as they leave it: the spans, logs and health
   * records around a call see only what the caller may.
   */
  around(connection: TaskConnection): TaskConnection {
    if (!this.#active) return connection;
    const masked = <T>(call: () => Promise<T>): Promise<T> =>
      call().catch((error: unknown) => {
        throw this.error(error);
      });
    return {
      callTool: (...args) => masked(() => connection.callTool(...args)),
      readResource: (...args) => masked(() => connection.readResource(...args)),
      getPrompt: (...args) => masked(() => connection.getPrompt(...args)),
      withClient: (...args) => masked(() => connection.withClient(...args)),
    };
  }

  /** A server's `sampling/createMessage`: the text of its messages and its system prompt. */
  sampling(params: CreateMessageRequest["params"]): CreateMessageRequest["params"] {
    if (!this.#active) return params;
    return {
      ...params,
      messages: params.messages.map((message) => ({
        ...message,
        content: Array.isArray(message.content)
          ? message.content.map((block) => this.#block(block))
          : this.#block(message.content),
      })) as CreateMessageRequest["params"]["messages"],
      ...(params.systemPrompt === undefined ? {} : { systemPrompt: this.text(params.systemPrompt) }),
    };
  }

  /**
   * A server's `elicitation/create`: its message, and the titles, descriptions, choices and
   * defaults of the fields it asks for. A masked field's default is dropped rather than prefilled.
   */
  elicitation(params: ElicitRequest["params"]): ElicitRequest["params"] {
    if (!this.#active) return params;
    if (params.mode === "url") return { ...params, message: this.text(params.message) };
    const properties = Object.fromEntries(
      Object.entries(params.requestedSchema.properties).map(([name, field]) => {
        const { default: prefilled, ...rest } = field as Record<string, unknown>;
        const masked = Object.fromEntries(
          Object.entries(rest).map(([key, value]) => [key, key === "type" ? value : this.#strings(value)]),
        );
        const keepDefault = prefilled !== undefined && !this.#obligations.maskFields.includes(name);
        return [name, keepDefault ? { ...masked, default: this.#strings(prefilled) } : masked];
      }),
    );
    return {
      ...params,
      message: this.text(params.message),
      requestedSchema: { ...params.requestedSchema, properties },
    } as ElicitRequest["params"];
  }

  #part(part: Part): Part {
    const filename = part.filename === undefined ? {} : { filename: this.text(part.filename) };
    if ("text" in part) return { ...part, ...filename, text: this.text(part.text) };
    if ("data" in part) return { ...part, ...filename, data: this.value(part.data) as typeof part.data };
    if ("url" in part) return { ...part, ...filename, url: this.text(part.url) };
    if (part.mediaType !== undefined && TEXTUAL.test(part.mediaType)) {
      const text = Buffer.from(part.raw, "base64").toString("utf8");
      return { ...part, ...filename, raw: Buffer.from(this.text(text), "utf8").toString("base64") };
    }
    return { ...part, ...filename };
  }

  #block<T>(block: T): T {
    if (typeof block === "object" && block !== null && "text" in block && typeof block.text === "string") {
      return { ...block, text: this.text(block.text) };
    }
    return block;
  }

  /** Patterns in every string, field names left alone: for schema keywords, not data. */
  #strings(value: unknown): unknown {
    return maskValue(value, { ...this.#obligations, maskFields: [] });
  }

  /** An error and its causes, same classes and fields, messages and stacks masked. */
  #copy(error: unknown): unknown {
    if (typeof error === "string") return this.text(error);
    if (!(error instanceof Error)) return error;
    const copy = Object.create(Object.getPrototypeOf(error) as object) as Error;
    for (const key of Object.getOwnPropertyNames(error)) {
      const field = Object.getOwnPropertyDescriptor(error, key);
      // V8 makes `stack` an accessor; it is set below, like the message.
      if (field !== undefined && "value" in field)
        Object.defineProperty(copy, key, { ...field, writable: true });
    }
    copy.message = this.text(error.message);
    copy.stack = this.text(error.stack ?? "");
    if (error.cause !== undefined) copy.cause = this.#copy(error.cause);
    return copy;
  }
}
