import type {
  CreateMessageRequest,
  CreateMessageResult,
  ElicitRequest,
  ElicitResult,
} from "@modelcontextprotocol/sdk/types.js";
import { McpError, ErrorCode as McpErrorCode } from "@modelcontextprotocol/sdk/types.js";
import type { Context } from "@opentelemetry/api";
import type { ClientRelay } from "../../schemas/mcp-client-relay.ts";
import type { PausableDeadline } from "../kit/pausable-deadline.ts";
import type { TaskMasking } from "./task-masking.ts";

/** The tool call a server's own request (sampling, elicitation) is answered on behalf of. */
export interface CallOrigin {
  server: string;
  /** The A2A task of the call (`<runId>:<stepId>:<attempt>` for a workflow step). */
  taskId: string | undefined;
  runId: string | undefined;
  stepId: string | undefined;
  /**
   * The call's grant: a sampling decision and a question to the run's user present it (it names
   * the run, the step and the principal). No MCP server ever sees it.
   */
  authorization: string | undefined;
  /** The call's own timeout, paused while a person answers a question the server asked. */
  clock: PausableDeadline;
  /** Aborts when the call ends, times out or is canceled. */
  signal: AbortSignal;
  /** The call's trace context: what is done for the server's request joins the run's trace. */
  traceContext: Context;
  /** Who the call's grant was issued to: the audit of a relayed elicitation names them. */
  principal?: string | undefined;
  /** Set for a gateway call whose client answers these requests itself (see client-relay.ts). */
  clientRelay?: ClientRelay | undefined;
  /** The call's masking: what the server asks is masked as the call's result would be. */
  masking: TaskMasking;
}

/** What the worker does with requests a server sends it during a tool call; wired in main.ts. */
export interface ServerRequestHandlers {
  onSampling(params: CreateMessageRequest["params"], origin: CallOrigin): Promise<CreateMessageResult>;
  onElicitation(params: ElicitRequest["params"], origin: CallOrigin): Promise<ElicitResult>;
  /** The most a call may take beyond its own timeout, in all, while people answer its questions. */
  elicitationTimeoutMs: number;
}

/**
 * The handlers, each given the server's request masked as its call obliges: sampling and
 * elicitation text go to the caller's user, its client or a model acting for it, so they may not
 * carry what the caller's result may not.
 */
export function maskedServerRequests(handlers: ServerRequestHandlers): ServerRequestHandlers {
  return {
    onSampling: (params, origin) => handlers.onSampling(origin.masking.sampling(params), origin),
    onElicitation: (params, origin) => handlers.onElicitation(origin.masking.elicitation(params), origin),
    elicitationTimeoutMs: handlers.elicitationTimeoutMs,
  };
}

/**
 * Tool calls in flight on one connection. MCP ties a server's request to the call that caused it
 * only on the wire of Streamable HTTP (the SSE stream of that POST), and the SDK passes no related
 * request id to a client's handlers; over stdio nothing ties them at all. So the rule is: a
 * server's request is answered for the one tool call in flight on its connection. With none, or
 * with several (whose principals and runs may differ), it is refused with an MCP error rather
 * than answered on behalf of a guess.
 *
 * A call of a task that starts while an earlier call of the same task is still in flight means
 * the step was taken over (its orchestrator or worker died, its claim lapsed): the earlier call is
 * abandoned, so that it neither holds the server's questions nor makes the new call ambiguous.
 */
export class CallsInFlight {
  readonly #calls = new Map<CallOrigin, () => void>();

  /** Runs `work` as the call `origin`; `abandon` aborts it when a newer call of its task starts. */
  async during<T>(origin: CallOrigin, abandon: () => void, work: () => Promise<T>): Promise<T> {
    for (const [earlier, abandonEarlier] of this.#calls) {
      if (origin.taskId !== undefined && earlier.taskId === origin.taskId) {
        this.#calls.delete(earlier);
        abandonEarlier();
      }
    }
    this.#calls.set(origin, abandon);
    try {
      return await work();
    } finally {
      this.#calls.delete(origin);
    }
  }

  /** The call a server's `method` request belongs to, by the rule above. */
  originOf(server: string, method: string): CallOrigin {
    const [only, ...others] = this.#calls.keys();
    if (only !== undefined && others.length === 0) return only;
    throw new McpError(
      McpErrorCode.InvalidRequest,
      only === undefined
        ? `Loom answers ${method} only during a tool call, and no call to "${server}" is in flight`
        : `Loom cannot tell which of ${this.#calls.size} tool calls in flight on "${server}" sent ${method}; it answers only when one call is in flight`,
    );
  }
}
