import { setTimeout as sleep } from "node:timers/promises";
import { jetstreamManager } from "@nats-io/jetstream";
import { describe, expect, it } from "vitest";
import { Buckets } from "../../schemas/subjects.ts";
import { createLogger, openBucket } from "../../services/kit/index.ts";
import { RunChanges } from "../../services/orchestrator/console/live.ts";
import { connectTo, startNatsServer } from "../helpers/nats-server.ts";

const log = createLogger({ service: "run-changes-test", level: "silent" });

/** Waits until `check` holds, for at most `ms`; the last value it saw either way. */
async function eventually<T>(read: () => Promise<T>, check: (value: T) => boolean, ms = 10_000): Promise<T> {
  const deadline = Date.now() + ms;
  let value = await read();
  while (!check(value) && Date.now() < deadline) {
    await sleep(100);
    value = await read();
  }
  return value;
}

describe("console - run changes are watched only while a live stream listens", () => {
  it("console - no watch of loom_runs without a listener, one while listening, nothing delivered after", async () => {
    await using ns = await startNatsServer();
    const nc = await connectTo(ns.url);
    const jsm = await jetstreamManager(nc);
    const kv = await openBucket(nc, Buckets.RUNS, { replicas: 1 });
    const watchers = async () => (await jsm.streams.info(`KV_${Buckets.RUNS}`)).state.consumer_count;
    const changes = new RunChanges(kv, log);
    await kv.put("before-anyone-listens", "{}");
    await sleep(300);
    expect(await watchers()).toBe(0);

    let heard = 0;
    const stop = changes.subscribe(() => heard++);
    expect(await eventually(watchers, (count) => count === 1)).toBe(1);
    const afterSetUp = await eventually(
      async () => heard,
      (count) => count >= 1,
      2_000,
    );
    await kv.put("while-listening", "{}");
    expect(
      await eventually(
        async () => heard,
        (count) => count > afterSetUp,
        2_000,
      ),
    ).toBeGreaterThan(afterSetUp);

    stop();
    const heardAtStop = heard;
    // The watch's consumer may outlive it until its inactivity threshold, but nothing reaches it.
    const delivered = async () => {
      const consumers = await jsm.consumers.list(`KV_${Buckets.RUNS}`).next();
      return consumers.map((consumer) => consumer.delivered.stream_seq).join(",");
    };
    await sleep(300);
    const before = await delivered();
    await kv.put("after-the-last-listener", "{}");
    await sleep(500);
    expect(await delivered()).toBe(before);
    expect(heard).toBe(heardAtStop);
    await nc.close();
  });
});
