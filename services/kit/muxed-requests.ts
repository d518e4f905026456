import {
  createInbox,
  type Msg,
  type NatsConnection,
  NoRespondersError,
  type Payload,
  PermissionViolationError,
  RequestError,
  type RequestOptions,
  type Subscription,
  TimeoutError,
} from "@nats-io/transport-node";

/** How often the requests in flight are checked against their deadlines: a timeout fires this much late at most. */
const SWEEP_MS = 50;
/** NATS's status for a request nobody was subscribed to. */
const NO_RESPONDERS = 503;

interface InFlight {
  subject: string;
  deadline: number;
  resolve: (answer: Msg) => void;
  reject: (error: Error) => void;
}

/**
 * Request/reply on one connection without nats.js's cost per request: nats.js 3 builds a
 * `RequestError` (with its stack) for every request it settles, however it ends, and a timer for
 * each. Here every answer comes to one inbox subscription (`<prefix>.<nuid>.*`), told apart by a
 * counter token; one sweep every SWEEP_MS (only while requests are in flight) times them out; an
 * error is made only for a request that fails, of the classes nats.js uses (a `TimeoutError`; a
 * `RequestError` caused by `NoRespondersError` or by a `PermissionViolationError`), so JetStream,
 * KV and every caller classify failures as before.
 *
 * `connectNats` puts one on the connection's own inbox for every request. A second one, on an
 * inbox subtree of its own, serves one kind of request: tool tasks (`toolTaskInboxOf`), which the
 * mcp-worker answers and which is the only inbox of the asker's its NATS user may publish to, so
 * it cannot race any other reply.
 */
export class MuxedRequests {
  readonly #nc: NatsConnection;
  readonly #inbox: string;
  readonly #inFlight = new Map<string, InFlight>();
  readonly #subscription: Subscription;
  #next = 0;
  #sweeper: ReturnType<typeof setInterval> | undefined;
  #closed = false;

  constructor(nc: NatsConnection, inboxPrefix: string | undefined) {
    this.#nc = nc;
    this.#inbox = `${createInbox(inboxPrefix)}.`;
    this.#subscription = nc.subscribe(`${this.#inbox}*`, {
      callback: (error, answer) => {
        if (error !== null) this.#failAll(new RequestError(error.message, { cause: error }));
        else this.#answer(answer);
      },
    });
    void this.#watchPermissions();
    void nc.closed().then(() => this.#failAll(new RequestError("connection closed")));
  }

  /** `nc.request`, muxed; a request that names its own reply subject (or asks for no mux) goes to nats.js. */
  request(subject: string, payload?: Payload, options?: RequestOptions): Promise<Msg> {
    if (options?.noMux === true || options?.reply !== undefined) {
      return this.#nc.request(subject, payload, options);
    }
    if (this.#closed) return Promise.reject(new RequestError(`the inbox ${this.#inbox}* is closed`));
    this.#next = (this.#next + 1) % Number.MAX_SAFE_INTEGER;
    const token = this.#next.toString(36);
    const timeoutMs = options?.timeout ?? 1_000;
    return new Promise<Msg>((resolve, reject) => {
      this.#inFlight.set(token, { subject, deadline: performance.now() + timeoutMs, resolve, reject });
      try {
        this.#nc.publish(subject, payload, {
          reply: `${this.#inbox}${token}`,
          ...(options?.headers === undefined ? {} : { headers: options.headers }),
        });
      } catch (error) {
        this.#inFlight.delete(token);
        reject(error as Error);
        return;
      }
      this.#sweeper ??= setInterval(() => this.#sweep(), SWEEP_MS);
    });
  }

  /** Stops listening on the inbox; requests still waiting fail at once. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#subscription.unsubscribe();
    this.#failAll(new RequestError(`the inbox ${this.#inbox}* is closed`));
  }

  #answer(answer: Msg): void {
    const token = answer.subject.slice(this.#inbox.length);
    const request = this.#inFlight.get(token);
    if (request === undefined) return;
    this.#inFlight.delete(token);
    if (answer.data.length === 0 && answer.headers?.code === NO_RESPONDERS) {
      const cause = new NoRespondersError(request.subject);
      request.reject(new RequestError(cause.message, { cause }));
    } else {
      request.resolve(answer);
    }
  }

  #sweep(): void {
    const now = performance.now();
    for (const [token, request] of this.#inFlight) {
      if (request.deadline > now) continue;
      this.#inFlight.delete(token);
      request.reject(new TimeoutError());
    }
    if (this.#inFlight.size === 0) {
      clearInterval(this.#sweeper);
      this.#sweeper = undefined;
    }
  }

  /** A publish the broker refused answers nothing: its requests fail at once, as in nats.js. */
  async #watchPermissions(): Promise<void> {
    for await (const status of this.#nc.status()) {
      if (this.#closed) return;
      if (status.type !== "error" || !(status.error instanceof PermissionViolationError)) continue;
      const refused = status.error;
      if (refused.operation !== "publish") continue;
      for (const [token, request] of this.#inFlight) {
        if (request.subject !== refused.subject) continue;
        this.#inFlight.delete(token);
        request.reject(new RequestError(refused.message, { cause: refused }));
      }
    }
  }

  #failAll(error: Error): void {
    for (const request of this.#inFlight.values()) request.reject(error);
    this.#inFlight.clear();
    clearInterval(this.#sweeper);
    this.#sweeper = undefined;
  }
}

/**
 * The connection with its `request` going through MuxedRequests, for every user of it: the typed
 * bus, JetStream publishes and API calls, KV reads and writes. Everything else is the connection's own.
 */
export function withMuxedRequests(nc: NatsConnection, inboxPrefix: string | undefined): NatsConnection {
  const requests = new MuxedRequests(nc, inboxPrefix);
  const request = requests.request.bind(requests);
  const bound = new Map<PropertyKey, unknown>();
  return new Proxy(nc, {
    get(target, property) {
      if (property === "request") return request;
      const value: unknown = Reflect.get(target, property, target);
      if (typeof value !== "function") return value;
      let method = bound.get(property);
      if (method === undefined) {
        method = value.bind(target);
        bound.set(property, method);
      }
      return method;
    },
  });
}
