import { type ChildProcess, execFile } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { promisify } from "node:util";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Buckets, Streams } from "../../schemas/subjects.ts";
import { launchNatsServer, stopProcess } from "../../services/cli/nats-server.ts";
import { type Stack, startStack, waitUntilReady } from "../../services/cli/stack.ts";
import { ensureStream, StreamDefinitions } from "../../services/kit/index.ts";
import { REPO_ROOT, tokenFor } from "../helpers/loom.ts";
import { connectTo } from "../helpers/nats-server.ts";
import { freePort } from "../helpers/ports.ts";
import { TEST_AUTH_ENV } from "../helpers/tokens.ts";

const run = promisify(execFile);
const CLI = join(REPO_ROOT, "services/cli/bin.ts");

const CLUSTER_CONF = join(REPO_ROOT, "infra/nats-cluster/cluster.conf");

/**
 * The compose file's cluster config, run as three local nats-server processes: the same file, the
 * node name from NATS_SERVER_NAME as compose sets it, and only what differs on one host (ports,
 * store dirs, routes to 127.0.0.1 instead of nats-1..3) given on the command line, which
 * overrides the file.
 */
describe("nats cluster - infra/nats-cluster/cluster.conf as three local nodes", () => {
  const children: ChildProcess[] = [];
  const urls: string[] = [];
  let baseDir: string;
  let nc: NatsConnection;

  beforeAll(async () => {
    baseDir = await mkdtemp(join(tmpdir(), "loom-nats-cluster-"));
    const clusterPorts = [await freePort(), await freePort(), await freePort()];
    const routes = clusterPorts.map((port) => `nats-route://127.0.0.1:${port}`).join(",");
    const previous = process.env.NATS_SERVER_NAME;
    try {
      for (const [index, clusterPort] of clusterPorts.entries()) {
        // launchNatsServer spawns with this process's environment, which is how the name gets in;
        // one at a time, so each node is spawned while its own name is set.
        process.env.NATS_SERVER_NAME = `nats-${index + 1}`;
        const node = await launchNatsServer({
          storeDir: join(baseDir, `n${index + 1}`),
          args: [
            ...["-c", CLUSTER_CONF, "-m", String(await freePort())],
            ...["--cluster", `nats://127.0.0.1:${clusterPort}`, "--routes", routes],
          ],
          onSpawn: (child) => children.push(child),
        });
        urls.push(node.url);
      }
    } finally {
      if (previous === undefined) delete process.env.NATS_SERVER_NAME;
      else process.env.NATS_SERVER_NAME = previous;
    }
    nc = await connectTo(urls.join(","));
    // JetStream answers once the nodes have elected a meta leader, a few seconds after the routes connect.
    const deadline = Date.now() + 30_000;
    for (;;) {
      try {
        await jetstreamManager(nc, { timeout: 1_000 });
        break;
      } catch (error) {
        if (Date.now() > deadline) throw error;
        await sleep(250);
      }
    }
  });

  afterAll(async () => {
    await nc?.close();
    await Promise.all(children.map((child) => stopProcess(child)));
    if (baseDir !== undefined) await rm(baseDir, { recursive: true, force: true });
  });

  it("nats cluster - Loom's services run a workflow on the cluster, connected to all three nodes", async () => {
    const logDir = join(baseDir, "logs");
    let stack: Stack | undefined;
    // A stream made with one replica before Loom ran here (as an older Loom made them): moved to R3.
    await ensureStream(await jetstreamManager(nc), StreamDefinitions.runs, 1);
    try {
      stack = await startStack({
        natsUrl: urls.join(","),
        logDir,
        env: { ...TEST_AUTH_ENV, LOOM_HTTP_PORT: "0", OTEL_TRACES_EXPORTER: "none" },
      });
      await waitUntilReady(nc, { tools: ["time.get_time", "crm.get_contact"], timeoutMs: 30_000, stack });
      const { stdout } = await run(
        process.execPath,
        [
          CLI,
          "--nats",
          urls.join(","),
          "submit",
          "hello",
          "--input",
          '{"contactId":"c-1"}',
          "--watch",
          "--json",
        ],
        { env: { ...process.env, LOOM_TOKEN: tokenFor("alice", "analyst"), OTEL_TRACES_EXPORTER: "none" } },
      );
      expect(JSON.parse(stdout)).toMatchObject({
        state: "completed",
        output: { greeting: "Hello, Ada Lovelace" },
      });
      // No LOOM_STREAM_REPLICAS given: three servers make every stream and bucket R3.
      const jsm = await jetstreamManager(nc);
      const replicas: Record<string, number> = {};
      for await (const stream of jsm.streams.list())
        replicas[stream.config.name] = stream.config.num_replicas;
      const loomStreams = Object.entries(replicas).filter(([name]) => /^(LOOM_|KV_loom_)/.test(name));
      expect(loomStreams.map(([name]) => name)).toEqual(
        expect.arrayContaining([
          Streams.RUNS,
          Streams.EVENTS,
          Streams.AUDIT,
          `KV_${Buckets.RUNS}`,
          `KV_${Buckets.STEPS}`,
        ]),
      );
      expect(loomStreams.filter(([, count]) => count !== 3)).toEqual([]);
    } finally {
      await stack?.stop();
    }
  });

  it("nats cluster - the three nodes form one JetStream cluster that keeps a replicated stream through a node's loss", async () => {
    const jsm = await jetstreamManager(nc);
    await jsm.streams.add({ name: "CLUSTER_CHECK", subjects: ["cluster.check"], num_replicas: 3 });
    const info = await jsm.streams.info("CLUSTER_CHECK");
    expect(info.cluster?.name).toBe("loom");
    expect(
      [info.cluster?.leader, ...(info.cluster?.replicas ?? []).map((replica) => replica.name)].sort(),
    ).toEqual(["nats-1", "nats-2", "nats-3"]);

    const js = jetstream(nc);
    for (let index = 0; index < 10; index++) await js.publish("cluster.check", `message ${index}`);
    const first = children[0];
    if (first !== undefined) await stopProcess(first);
    const survivor = await connectTo(urls.slice(1).join(","));
    try {
      // No account check: it would time out while the survivors elect a new meta leader, which
      // the polling below waits out.
      const survivorJsm = await jetstreamManager(survivor, { checkAPI: false });
      const state = await eventuallyState(survivorJsm);
      expect(state.messages).toBe(10);
    } finally {
      await survivor.close();
    }
  });
});

async function eventuallyState(jsm: Awaited<ReturnType<typeof jetstreamManager>>) {
  const deadline = Date.now() + 20_000;
  for (;;) {
    try {
      return (await jsm.streams.info("CLUSTER_CHECK")).state;
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await sleep(250);
    }
  }
}
