import {
  createInbox,
  type Msg,
  type MsgHdrs,
  type NatsConnection,
  NoRespondersError,
  RequestError,
  type Subscription,
  TimeoutError,
} from "@nats-io/transport-node";

/** NATS's status for a request nobody was subscribed to. */
const NO_RESPONDERS = 503;

interface Waiting {
  resolve(msg: Msg): void;
  reject(error: Error): void;
}

/**
 * The answers to one kind of request, on an inbox subtree of their own: one subscription on
 * `<prefix>.<nuid>.*` serves every request sent through it, as the client's own request inbox
 * serves the rest. A user that answers only these (the mcp-worker, tool tasks) may then publish
 * under `<prefix>.>` and to no other inbox of the asker's, so it cannot race any other reply.
 * `request` behaves as `NatsConnection.request` does, errors included.
 */
export class ReplyInbox {
  readonly #nc: NatsConnection;
  readonly #base: string;
  readonly #waiting = new Map<string, Waiting>();
  readonly #subscription: Subscription;
  #next = 0;

  constructor(nc: NatsConnection, prefix: string) {
    this.#nc = nc;
    this.#base = `${createInbox(prefix)}.`;
    this.#subscription = nc.subscribe(`${this.#base}*`, {
      callback: (error, msg) => {
        if (error !== null) {
          this.#failAll(new RequestError(error.message, { cause: error }));
          return;
        }
        const waiting = this.#waiting.get(msg.subject.slice(this.#base.length));
        if (waiting === undefined) return; // an answer after its request timed out, as NATS drops it too
        if (msg.data.length === 0 && msg.headers?.code === NO_RESPONDERS) {
          waiting.reject(new NoRespondersError(msg.subject));
        } else {
          waiting.resolve(msg);
        }
      },
    });
  }

  request(
    subject: string,
    payload: Uint8Array,
    options: { timeout: number; headers?: MsgHdrs },
  ): Promise<Msg> {
    const token = String(this.#next++);
    return new Promise<Msg>((resolve, reject) => {
      const done = () => {
        clearTimeout(timer);
        this.#waiting.delete(token);
      };
      const timer = setTimeout(() => {
        done();
        reject(new TimeoutError());
      }, options.timeout);
      this.#waiting.set(token, {
        resolve: (msg) => {
          done();
          resolve(msg);
        },
        reject: (error) => {
          done();
          reject(error);
        },
      });
      try {
        this.#nc.publish(subject, payload, {
          reply: `${this.#base}${token}`,
          ...(options.headers === undefined ? {} : { headers: options.headers }),
        });
      } catch (cause) {
        this.#waiting.get(token)?.reject(new RequestError(String(cause), { cause }));
      }
    });
  }

  /** Stops listening; requests still waiting fail at once. */
  close(): void {
    this.#subscription.unsubscribe();
    this.#failAll(new RequestError(`the reply inbox ${this.#base}* is closed`));
  }

  #failAll(error: Error): void {
    for (const waiting of [...this.#waiting.values()]) waiting.reject(error);
  }
}
