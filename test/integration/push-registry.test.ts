import type { NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { PushRegistration } from "../../schemas/a2a.ts";
import { Buckets } from "../../schemas/subjects.ts";
import { createLogger } from "../../services/kit/index.ts";
import { openBucket } from "../../services/kit/jetstream.ts";
import { NO_MASKS } from "../../services/kit/masking.ts";
import { OutboundAllowList, OutboundTargets } from "../../services/orchestrator/a2a/outbound-url.ts";
import { PushRegistry } from "../../services/orchestrator/a2a/push-notifications.ts";
import { connectTo, startNatsServer } from "../helpers/nats-server.ts";

const log = createLogger({ service: "push-registry-test", level: "silent" });
const allowList = OutboundAllowList.parse(OutboundTargets.WEBHOOK, ["http://127.0.0.1:9/"]);
const config = (taskId: string, id: string): PushRegistration => ({
  taskId,
  id,
  url: `http://127.0.0.1:9/${taskId}/${id}`,
  readerObligations: NO_MASKS,
});

/** A nats-server and two registries on two connections, as two orchestrator replicas would have. */
async function openReplicas() {
  const ns = await startNatsServer();
  const connections = [await connectTo(ns.url), await connectTo(ns.url)] as const;
  const open = (nc: NatsConnection) =>
    openBucket(nc, Buckets.PUSH, { replicas: 1 }).then((kv) => PushRegistry.open(kv, allowList, log));
  // A registration made before the replicas open is found too.
  const early = await open(connections[0]);
  await early.save(config("run-0", "c0"));
  early.close();
  const registries = [await open(connections[0]), await open(connections[1])] as const;
  return {
    registries,
    async close() {
      for (const registry of registries) registry.close();
      for (const nc of connections) await nc.close();
      await ns[Symbol.asyncDispose]();
    },
  };
}

describe("push registry - webhooks found from a KV watch, not a request per run event", () => {
  let replicas: Awaited<ReturnType<typeof openReplicas>>;
  let one: PushRegistry;
  let other: PushRegistry;

  beforeAll(async () => {
    replicas = await openReplicas();
    [one, other] = replicas.registries;
  });
  afterAll(() => replicas?.close());

  it("push registry - what was stored before it opened is there, and only under its own run", () => {
    expect(one.list("run-0").map((found) => found.id)).toEqual(["c0"]);
    expect(one.list("run-00")).toEqual([]);
  });

  it("push registry - a save is listed by the same replica as soon as it resolves, a delete gone as soon as it resolves", async () => {
    for (let n = 0; n < 20; n++) {
      await one.save(config(`run-${n + 1}`, "c1"));
      expect(one.list(`run-${n + 1}`).map((found) => found.id)).toEqual(["c1"]);
    }
    await one.save(config("run-1", "c2"));
    expect(
      one
        .list("run-1")
        .map((found) => found.id)
        .sort(),
    ).toEqual(["c1", "c2"]);
    await one.delete("run-1", "c1");
    expect(one.list("run-1").map((found) => found.id)).toEqual(["c2"]);
  });

  it("push registry - another replica's registration and deletion reach this one's list", async () => {
    await other.save(config("run-x", "cx"));
    await expect.poll(() => one.list("run-x").map((found) => found.id)).toEqual(["cx"]);
    await other.delete("run-x", "cx");
    await expect.poll(() => one.list("run-x")).toEqual([]);
  });

  it("push registry - a webhook outside the allow-list is refused and never listed", async () => {
    await expect(
      one.save({ ...config("run-y", "cy"), url: "http://169.254.169.254/latest" }),
    ).rejects.toThrow();
    expect(one.list("run-y")).toEqual([]);
  });
});
