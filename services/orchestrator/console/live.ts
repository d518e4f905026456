import { type KV, KvWatchInclude } from "@nats-io/kv";
import type { Request, Response } from "express";
import { toWireError } from "../../kit/index.ts";

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
 * by every console stream, which then asks the authorised read API again for its caller.
 */
export class RunChanges {
  readonly #listeners = new Set<() => void>();
  #stop: (() => void) | undefined;

  static async watch(kv: KV): Promise<RunChanges> {
    const changes = new RunChanges();
    const watcher = await kv.watch({ include: KvWatchInclude.UpdatesOnly });
    changes.#stop = () => watcher.stop();
    void (async () => {
      for await (const _entry of watcher) for (const listener of changes.#listeners) listener();
    })();
    return changes;
  }

  /** Calls `listener` once a burst of changes settles; returns how to stop. */
  subscribe(listener: () => void): () => void {
    let timer: NodeJS.Timeout | undefined;
    const settled = () => {
      clearTimeout(timer);
      timer = setTimeout(listener, SETTLE_MS);
    };
    this.#listeners.add(settled);
    return () => {
      clearTimeout(timer);
      this.#listeners.delete(settled);
    };
  }

  stop(): void {
    this.#stop?.();
    this.#listeners.clear();
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
