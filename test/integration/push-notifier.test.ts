import { createServer, type Server } from "node:http";
import { setTimeout as sleep } from "node:timers/promises";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Buckets, runEventsSubject } from "../../schemas/subjects.ts";
import { createLogger } from "../../services/kit/index.ts";
import { ensureStream, openBucket, StreamDefinitions } from "../../services/kit/jetstream.ts";
import { NO_MASKS } from "../../services/kit/masking.ts";
import { OutboundAllowList, OutboundTargets } from "../../services/orchestrator/a2a/outbound-url.ts";
import { PushRegistry, startPushNotifier } from "../../services/orchestrator/a2a/push-notifications.ts";
import { connectTo, type NatsServer, startNatsServer } from "../helpers/nats-server.ts";
import { freePort } from "../helpers/ports.ts";

const log = createLogger({ service: "push-notifier-test", level: "silent" });

describe("push notifier - a failing webhook does not repeat events to the others", () => {
  let ns: NatsServer;
  let server: Server;
  let port: number;
  /** Every POST the webhooks received: path and body. */
  const received: Array<{ path: string; body: string }> = [];

  beforeAll(async () => {
    ns = await startNatsServer();
    port = await freePort();
    server = createServer((req, res) => {
      let body = "";
      req.on("data", (chunk) => {
        body += chunk;
      });
      req.on("end", () => {
        received.push({ path: req.url ?? "", body });
        res.writeHead(req.url === "/hooks/broken" ? 500 : 200).end();
      });
    });
    await new Promise<void>((resolve) => server.listen(port, "127.0.0.1", resolve));
  });
  afterAll(async () => {
    server?.close();
    await ns?.[Symbol.asyncDispose]();
  });

  it("push notifier - a retried event goes only to the webhook that failed it", async () => {
    await using nc = await connectTo(ns.url);
    const jsm = await jetstreamManager(nc);
    await ensureStream(jsm, StreamDefinitions.events, 1);
    const allowList = OutboundAllowList.parse(OutboundTargets.WEBHOOK, [`http://127.0.0.1:${port}/hooks/`]);
    const registry = await PushRegistry.open(
      await openBucket(nc, Buckets.PUSH, { replicas: 1 }),
      allowList,
      log,
    );
    const runId = "8a6e0f2e-6a43-4b55-9f0e-4f1f2d0c3b11";
    for (const id of ["healthy-1", "healthy-2", "broken"]) {
      await registry.save({
        taskId: runId,
        id,
        url: `http://127.0.0.1:${port}/hooks/${id}`,
        readerObligations: NO_MASKS,
      });
    }
    const notifier = await startPushNotifier({ js: jetstream(nc), jsm, registry, log });
    try {
      const js = jetstream(nc);
      for (const n of [1, 2, 3]) await js.publish(runEventsSubject(runId), JSON.stringify({ n }));
      // Each event fails at the broken webhook and is retried after 1 s, then 2 s.
      const deadline = Date.now() + 15_000;
      const broken = () => received.filter((entry) => entry.path === "/hooks/broken").length;
      while (broken() < 6 && Date.now() < deadline) await sleep(100);
      expect(broken()).toBeGreaterThanOrEqual(6);
      for (const healthy of ["/hooks/healthy-1", "/hooks/healthy-2"]) {
        const bodies = received.filter((entry) => entry.path === healthy).map((entry) => entry.body);
        expect(bodies.sort()).toEqual(['{"n":1}', '{"n":2}', '{"n":3}']);
      }
    } finally {
      notifier.stop();
      registry.close();
    }
  });
});
