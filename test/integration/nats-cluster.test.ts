import { execFile } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { promisify } from "node:util";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Buckets, bucketStream, Streams, Subjects } from "../../schemas/subjects.ts";
import { launchNatsServer, stopProcess } from "../../services/cli/nats-server.ts";
import { type Stack, startStack, waitUntilReady } from "../../services/cli/stack.ts";
import { ensureStream, StreamDefinitions, writeOnceProblems } from "../../services/kit/index.ts";
import { AttackClass, attack, control } from "../helpers/attack-tally.ts";
import { NatsUser, REPO_ROOT, tokenFor } from "../helpers/loom.ts";
import { type NatsCluster, startNatsCluster } from "../helpers/nats-cluster.ts";
import { connectTo } from "../helpers/nats-server.ts";
import { OBSERVER, OPERATOR } from "../helpers/nats-users.ts";
import { freePort } from "../helpers/ports.ts";
import { TEST_AUTH_ENV } from "../helpers/tokens.ts";

const run = promisify(execFile);
const CLI = join(REPO_ROOT, "services/cli/bin.ts");
/** Four services starting against a cluster that creates R3 streams: slow when the machine is busy. */
const READY_TIMEOUT_MS = 60_000;
/**
 * Two nodes electing new leaders after the third's SIGKILL: seconds when idle, but elections
 * repeat when a loaded machine starves the nodes' heartbeats.
 */
const HEAL_TIMEOUT_MS = 45_000;

/** The compose file's cluster config as three local nodes (see `startNatsCluster`). */
describe("nats cluster - infra/nats-cluster/cluster.conf as three local nodes", () => {
  let cluster: NatsCluster;
  let urls: string[];
  let nc: NatsConnection;
  let logDir: string;

  beforeAll(async () => {
    cluster = await startNatsCluster();
    urls = cluster.nodes.map((node) => node.url);
    nc = cluster.observer;
    logDir = await mkdtemp(join(tmpdir(), "loom-cluster-logs-"));
  });

  afterAll(async () => {
    await cluster?.[Symbol.asyncDispose]();
    if (logDir !== undefined) await rm(logDir, { recursive: true, force: true });
  });

  it(
    "nats cluster - Loom's services run a workflow on the cluster, connected to all three nodes",
    async () => {
      let stack: Stack | undefined;
      // A stream made with one replica before Loom ran here (as an older Loom made them): services
      // never change a stream, so the operator moves it to R3 (`loom streams replicate`, as a NATS user
      // of their own: none of Loom's users may change a stream).
      const orchestrator = await cluster.connectAs(NatsUser.ORCHESTRATOR);
      await ensureStream(await jetstreamManager(orchestrator), StreamDefinitions.runs, 1);
      const replicated = await run(
        process.execPath,
        [CLI, "--nats", cluster.urlAs(OPERATOR), "streams", "replicate", "3", "--json"],
        { env: { ...process.env, OTEL_TRACES_EXPORTER: "none" } },
      );
      expect(JSON.parse(replicated.stdout)).toEqual({ replicas: 3, moved: [Streams.RUNS] });
      try {
        // As compose runs them: NATS_URL names no user, each service takes its own user's password
        // from the file the nodes include.
        stack = await startStack({
          natsUrl: cluster.url,
          logDir,
          env: {
            ...TEST_AUTH_ENV,
            LOOM_NATS_PASSWORD_FILE: cluster.passwordFile,
            LOOM_HTTP_PORT: "0",
            OTEL_TRACES_EXPORTER: "none",
          },
        });
        // Readiness asks policy and the agents directly, which only a service's user may.
        await waitUntilReady(orchestrator, {
          tools: ["time.get_time", "crm.get_contact"],
          timeoutMs: READY_TIMEOUT_MS,
          stack,
        });
        const { stdout } = await run(
          process.execPath,
          [
            CLI,
            "--nats",
            cluster.urlAs(NatsUser.SUBMITTER),
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
        // The pins bucket is write-once on a cluster too (R3 enforces the per-key limit through its leader).
        const pins = await jsm.streams.info(bucketStream(Buckets.AUDIT_KEYS));
        expect(writeOnceProblems(pins.config)).toEqual([]);
        const policyPins = await new Kvm(orchestrator).open(Buckets.AUDIT_KEYS);
        const keys: string[] = [];
        for await (const key of await policyPins.keys("acp-policy.*")) keys.push(key);
        const [pin] = keys;
        expect(pin).toBeDefined();
        const asPolicy = await new Kvm(await cluster.connectAs(NatsUser.ACP_POLICY)).open(Buckets.AUDIT_KEYS);
        const before = await asPolicy.get(pin as string);
        await attack(AttackClass.AUDIT_FORGERY, "acp-policy overwriting its own pin on a cluster", () =>
          asPolicy.put(pin as string, "{}").then(
            () => false,
            async () => (await asPolicy.get(pin as string))?.revision === before?.revision,
          ),
        );
      } finally {
        await stack?.stop();
      }
    },
    2 * READY_TIMEOUT_MS,
  );

  it("nats cluster - every node refuses a client without a user or with another user's password", async () => {
    for (const node of cluster.nodes) {
      for (const [what, credentials] of [
        ["no user", {}],
        [
          "the orchestrator with the submitter's password",
          { user: NatsUser.ORCHESTRATOR, pass: cluster.password(NatsUser.SUBMITTER) },
        ],
      ] as const) {
        const refused = await connectTo(node.url, { ...credentials, reconnect: false }).then(
          async (connection) => {
            await connection.close();
            return `${node.name} let in ${what}`;
          },
          (error: unknown) => (error instanceof Error ? error.message : String(error)),
        );
        expect(refused).toMatch(/Authorization Violation/i);
      }
    }
    // Control: the submitter's own password opens every node.
    for (const node of cluster.nodes) {
      const submitter = await connectTo(node.url, {
        user: NatsUser.SUBMITTER,
        pass: cluster.password(NatsUser.SUBMITTER),
      });
      await submitter.close();
    }
  });

  it("nats cluster - a nats-server without the route password cannot join the cluster and hear its traffic", async () => {
    const rogueDir = await mkdtemp(join(tmpdir(), "loom-rogue-node-"));
    const rogue = await launchNatsServer({
      storeDir: rogueDir,
      args: [
        ...["--server_name", "rogue", "--cluster_name", "loom"],
        ...["--cluster", `nats://127.0.0.1:${await freePort()}`],
        ...["--routes", cluster.routePorts.map((port) => `nats-route://127.0.0.1:${port}`).join(",")],
      ],
    });
    try {
      const eavesdropper = await connectTo(rogue.url);
      const overheard: string[] = [];
      eavesdropper.subscribe("loom.>", {
        callback: (_error, message) => {
          overheard.push(message.subject);
        },
      });
      await eavesdropper.flush();
      const member = await cluster.connectAs(OBSERVER);
      const heard: string[] = [];
      member.subscribe("loom.>", {
        callback: (_error, message) => {
          heard.push(message.subject);
        },
      });
      await member.flush();
      // Routes retry every second or so: give the rogue the time it would take to join.
      await sleep(3_000);
      const submitter = await cluster.connectAs(NatsUser.SUBMITTER);
      submitter.publish(Subjects.WORKFLOWS_LIST, "");
      await submitter.flush();
      await sleep(1_000);
      await attack(
        AttackClass.TRUSTED_BUS,
        "a rogue node without the route password hears the cluster",
        async () => overheard.length === 0,
      );
      await control("a member of the cluster hears the same message", async () =>
        heard.includes(Subjects.WORKFLOWS_LIST),
      );
      await eavesdropper.close();
    } finally {
      await stopProcess(rogue.child, "SIGKILL");
      await rm(rogueDir, { recursive: true, force: true });
    }
  });

  it(
    "nats cluster - the three nodes form one JetStream cluster that keeps a replicated stream through a node's loss",
    async () => {
      // The runs stream, R3, as the orchestrator makes it; submissions as a submitter sends them.
      await ensureStream(
        await jetstreamManager(await cluster.connectAs(NatsUser.ORCHESTRATOR)),
        StreamDefinitions.runs,
        3,
      );
      const jsm = await jetstreamManager(nc);
      const info = await jsm.streams.info(Streams.RUNS);
      expect(info.cluster?.name).toBe("loom");
      expect(
        [info.cluster?.leader, ...(info.cluster?.replicas ?? []).map((replica) => replica.name)].sort(),
      ).toEqual(["nats-1", "nats-2", "nats-3"]);

      const js = jetstream(await cluster.connectAs(NatsUser.SUBMITTER));
      for (let index = 0; index < 10; index++)
        await js.publish(Subjects.RUNS_SUBMIT, `not a submission ${index}`, {
          msgID: `cluster-check-${index}`,
        });
      const stored = (await jsm.streams.info(Streams.RUNS)).state.messages;
      await cluster.nodes[0]?.kill();
      const survivor = await connectTo(urls.slice(1).join(","), {
        user: OBSERVER,
        pass: cluster.password(OBSERVER),
      });
      try {
        // No account check: it would time out while the survivors elect a new meta leader, which
        // the polling below waits out.
        const survivorJsm = await jetstreamManager(survivor, { checkAPI: false, timeout: 2_000 });
        const state = await eventuallyState(survivorJsm);
        expect(state.messages).toBe(stored);
      } finally {
        await survivor.close();
      }
    },
    2 * HEAL_TIMEOUT_MS,
  );
});

async function eventuallyState(jsm: Awaited<ReturnType<typeof jetstreamManager>>) {
  const deadline = Date.now() + HEAL_TIMEOUT_MS;
  for (;;) {
    try {
      return (await jsm.streams.info(Streams.RUNS)).state;
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await sleep(250);
    }
  }
}
