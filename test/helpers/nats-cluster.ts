import type { ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { copyFile, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection, NodeConnectionOptions } from "@nats-io/transport-node";
import { inboxPrefixOf } from "../../schemas/nats-users.ts";
import { launchNatsServer, stopProcess } from "../../services/cli/nats-server.ts";
import { natsUrlAs, ROUTE_PASSWORD_VARIABLE } from "../../services/cli/nats-users.ts";
import { REPO_ROOT } from "./loom.ts";
import { connectTo } from "./nats-server.ts";
import { type NatsUsersConf, OBSERVER, type TestNatsUser, writeNatsUsersConf } from "./nats-users.ts";
import { freePort } from "./ports.ts";

const CLUSTER_CONF = join(REPO_ROOT, "infra/nats-cluster/cluster.conf");
const NODES = 3;

/** One node of a local cluster: keeps its name, ports and store across restarts. */
export interface ClusterNode {
  /** `nats-1` and so on, as compose names them. */
  readonly name: string;
  readonly url: string;
  readonly child: ChildProcess;
  /** SIGKILL, as a crash would, and wait for the exit. */
  kill(): Promise<void>;
  /** Starts the node again on its ports and store. */
  restart(): Promise<void>;
}

export interface NatsCluster extends AsyncDisposable {
  nodes: ClusterNode[];
  /** Every node's URL, comma-separated, for NATS_URL. */
  url: string;
  /** The read-only observer's connection to the whole cluster, open once JetStream answers. */
  observer: NatsConnection;
  /** The users' passwords the nodes include, for a service's LOOM_NATS_PASSWORD_FILE (as compose). */
  passwordFile: string;
  password(user: TestNatsUser): string;
  /** Every node's URL with one user's credentials, for a service's NATS_URL. */
  urlAs(user: TestNatsUser): string;
  /** A connection to the whole cluster as one user, closed with the cluster. */
  connectAs(user: TestNatsUser, options?: NodeConnectionOptions): Promise<NatsConnection>;
  /** Each node's route port, as a rogue nats-server would try to join. */
  routePorts: number[];
  /** The node leading `stream` now (its Raft group's leader). */
  leaderOf(stream: string): Promise<ClusterNode>;
}

/**
 * The compose file's cluster config, run as three local nats-server processes: the same file in
 * the same layout as compose mounts it (infra/nats/nats-server.conf beside it, with the test's
 * observer added as `startNatsWithUsers` does; the passwords in the environment), the node name
 * from NATS_SERVER_NAME as compose sets it, routes that authenticate with the route password as
 * compose's command gives them, and only what differs on one host (ports, store dirs, routes to
 * 127.0.0.1 instead of nats-1..3) given on the command line. nats-server's `--cluster` flag
 * replaces the config's cluster block, its authorization too, so the flag's URL carries the
 * route user and password again.
 */
export async function startNatsCluster(): Promise<NatsCluster> {
  const baseDir = await mkdtemp(join(tmpdir(), "loom-nats-cluster-"));
  const clusterPorts: number[] = [];
  for (let index = 0; index < NODES; index++) clusterPorts.push(await freePort());
  const routePassword = `p${randomBytes(24).toString("hex")}`;
  const routes = clusterPorts
    .map((port) => `nats-route://route:${routePassword}@127.0.0.1:${port}`)
    .join(",");
  const nodes: ClusterNode[] = [];
  let users: NatsUsersConf;
  try {
    users = await writeNatsUsersConf(baseDir, "");
    await copyFile(CLUSTER_CONF, join(baseDir, "cluster.conf"));
    for (const [index, clusterPort] of clusterPorts.entries()) {
      const node = { name: `nats-${index + 1}`, storeDir: join(baseDir, `n${index + 1}`) };
      nodes.push(await startNode(node, users, { clusterPort, routes, routePassword }));
    }
  } catch (error) {
    await Promise.all(nodes.map((node) => stopProcess(node.child, "SIGKILL")));
    await rm(baseDir, { recursive: true, force: true });
    throw error;
  }
  const url = nodes.map((node) => node.url).join(",");
  const connections: NatsConnection[] = [];
  const connectAs = async (user: TestNatsUser, options: NodeConnectionOptions = {}) => {
    const nc = await connectTo(url, {
      user,
      pass: users.password(user),
      inboxPrefix: inboxPrefixOf(user),
      maxReconnectAttempts: -1,
      ...options,
    });
    connections.push(nc);
    return nc;
  };
  const observer = await connectAs(OBSERVER);
  await jetStreamAnswers(observer);
  return {
    nodes,
    url,
    observer,
    passwordFile: join(baseDir, "nats-users.env"),
    routePorts: clusterPorts,
    password: users.password,
    urlAs: (user) => natsUrlAs(url, user, users.password(user)),
    connectAs,
    async leaderOf(stream) {
      const jsm = await jetstreamManager(observer, { checkAPI: false });
      const leader = (await jsm.streams.info(stream)).cluster?.leader;
      const node = nodes.find((candidate) => candidate.name === leader);
      if (node === undefined) throw new Error(`stream ${stream} has no leader now (${String(leader)})`);
      return node;
    },
    async [Symbol.asyncDispose]() {
      await Promise.all(connections.map((nc) => nc.close()));
      await Promise.all(nodes.map((node) => stopProcess(node.child)));
      await rm(baseDir, { recursive: true, force: true });
    },
  };
}

async function startNode(
  node: { name: string; storeDir: string },
  users: NatsUsersConf,
  cluster: { clusterPort: number; routes: string; routePassword: string },
): Promise<ClusterNode> {
  const { clusterPort, routes, routePassword } = cluster;
  const { name, storeDir } = node;
  const monitorPort = await freePort();
  const launch = (port: number) =>
    launchNatsServer({
      storeDir,
      port,
      args: [
        ...["-c", join(dirname(users.conf), "cluster.conf"), "-m", String(monitorPort)],
        ...["--cluster", `nats://route:${routePassword}@127.0.0.1:${clusterPort}`, "--routes", routes],
      ],
      env: { ...users.env, [ROUTE_PASSWORD_VARIABLE]: routePassword, NATS_SERVER_NAME: name },
    });
  let current = await launch(-1);
  const { url, port } = current;
  return {
    name,
    url,
    get child() {
      return current.child;
    },
    kill: () => stopProcess(current.child, "SIGKILL"),
    async restart() {
      await stopProcess(current.child, "SIGKILL");
      current = await launch(port);
    },
  };
}

/** JetStream answers once the nodes have elected a meta leader, a few seconds after the routes connect. */
async function jetStreamAnswers(nc: NatsConnection): Promise<void> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    try {
      await jetstreamManager(nc, { timeout: 1_000 });
      return;
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await sleep(250);
    }
  }
}
