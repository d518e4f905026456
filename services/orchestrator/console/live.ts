import { type KV, KvWatchInclude } from "@nats-io/kv";
import type { Request, Response } from "express";
import { type Logger, retryBrokerFailures, toWireError } from "../../kit/index.ts";

/** How often an idle stream sends a comment, so proxies keep it open and a gone client is noticed. */
const KEEPALIVE_MS = 15_000;
/** Changes to runs come in bursts (a step writes several times): one refresh per burst. */
const SETTLE_MS = 150;

/** A Server-Sent Events response: named events of JSON data, until the client goes away. */
export interface EventStream {
  send(event: string, data: unknown): void;
  /** Sends the error as an `error` event and ends the stream. */
  fail(error: unknown): void;
  readonly closed: boolean;
  /** Resolves when the client goes away or the stream ends. */
  readonly done: Promise<void>;
}

export function openEventStream(req: Request, res: Response): EventStream {
  res.status(200).set({
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-cache, no-transform",
    "X-Accel-Buffering": "no",
  });
  res.flushHeaders();
  let closed = false;
  let finish: () => void = () => {};
  const done = new Promise<void>((resolve) => {
    finish = resolve;
  });
  const keepalive = setInterval(() => res.write(": keepalive\n\n"), KEEPALIVE_MS);
  const close = () => {
    if (closed) return;
    closed = true;
    clearInterval(keepalive);
    finish();
  };
  req.on("close", close);
  return {
    send(event, data) {
      if (!closed) res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
    },
    fail(error) {
      const { code, message } = toWireError(error);
      this.send("error", { error: { code, message } });
      close();
      res.end();
    },
    get closed() {
      return closed;
    },
    done,
  };
}

/**
 * Tells listeners when any run record changes: one watch of KV `loom_runs` per orchestrator, shared
 * by every console stream, which then asks the authorised read API again for its caller. The watch
 * runs only while someone listens: without it every write of every run would reach this process
 * once more than the run driver's own watch.
 */
export class RunChanges {
  readonly #kv: KV;
  readonly #log: Logger;
  readonly #listeners = new Set<() => void>();
  /** Ends the watch that runs now, or the one being set up. */
  #unwatch: (() => void) | undefined;

  constructor(kv: KV, log: Logger) {
    this.#kv = kv;
    this.#log = log;
  }

  /** Calls `listener` once a burst of changes settles; returns how to stop. */
  subscribe(listener: () => void): () => void {
    let timer: NodeJS.Timeout | undefined;
    const settled = () => {
      clearTimeout(timer);
      timer = setTimeout(listener, SETTLE_MS);
    };
    this.#listeners.add(settled);
    this.#watch();
    return () => {
      clearTimeout(timer);
      this.#listeners.delete(settled);
      if (this.#listeners.size === 0) this.stop();
    };
  }

  stop(): void {
    this.#unwatch?.();
    this.#unwatch = undefined;
  }

  #notify(): void {
    for (const listener of this.#listeners) listener();
  }

  #watch(): void {
    if (this.#unwatch !== undefined) return;
    let stopped = false;
    let watcher: Awaited<ReturnType<KV["watch"]>> | undefined;
    const unwatch = () => {
      stopped = true;
      watcher?.stop();
    };
    this.#unwatch = unwatch;
    void retryBrokerFailures(() => this.#kv.watch({ include: KvWatchInclude.UpdatesOnly })).then(
      async (started) => {
        watcher = started;
        if (stopped) return started.stop();
        // What changed while the watch was being set up is asked for once more.
        this.#notify();
        for await (const _entry of started) this.#notify();
      },
      (error: unknown) => {
        this.#log.warn({ err: error }, "console streams get no live updates: the run watch failed");
        if (this.#unwatch === unwatch) this.#unwatch = undefined;
      },
    );
  }
}

/**
 * Streams a query's answer now and again after every change to runs, when it differs. The query is
 * asked with the caller's token each time, so a token that expires or loses its right ends it.
 */
export async function streamQuery(
  stream: EventStream,
  changes: RunChanges,
  event: string,
  query: () => Promise<unknown>,
): Promise<void> {
  let last = "";
  let running: Promise<void> = Promise.resolve();
  const refresh = () => {
    running = running.then(async () => {
      if (stream.closed) return;
      try {
        const answer = await query();
        const text = JSON.stringify(answer);
        if (text !== last) {
          last = text;
          stream.send(event, answer);
        }
      } catch (error) {
        stream.fail(error);
      }
    });
  };
  refresh();
  const unsubscribe = changes.subscribe(refresh);
  await stream.done;
  unsubscribe();
}
