import { setTimeout as sleep } from "node:timers/promises";

/** Polls `read` until `done` holds for its value; fails after `timeoutMs` showing the last value. */
export async function eventually<T>(
  read: () => T | Promise<T>,
  done: (value: T) => boolean,
  timeoutMs = 15_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let value = await read();
  while (!done(value)) {
    if (Date.now() > deadline)
      throw new Error(`gave up waiting; last value:\n${JSON.stringify(value, null, 2)}`);
    await sleep(100);
    value = await read();
  }
  return value;
}
