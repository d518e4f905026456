import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { StreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/streamableHttp.js";
import type { CallToolResult } from "@modelcontextprotocol/sdk/types.js";
import { Kvm } from "@nats-io/kv";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { ErrorCode } from "../../schemas/errors.ts";
import { type McpServerConfig, McpServerConfigSchema } from "../../schemas/mcp.ts";
import { IDEMPOTENCY_META_KEY } from "../../schemas/steps.ts";
import { Buckets } from "../../schemas/subjects.ts";
import type { Stack } from "../../services/cli/stack.ts";
import { createLogger, LoomError, registry, traceToolCall } from "../../services/kit/index.ts";
import { HealthReporter } from "../../services/mcp-worker/server-health.ts";
import { ServerPool } from "../../services/mcp-worker/server-pool.ts";
import { NatsUser, type NatsUsersServer, startNatsWithUsers } from "../helpers/nats-users.ts";

const REPO_ROOT = resolve(import.meta.dirname, "../..");
const FIXTURE = join(REPO_ROOT, "test/fixtures/resilience-server.ts");
const CLI = join(REPO_ROOT, "services/cli/bin.ts");
const log = createLogger({ service: "mcp-resilience-test", level: "silent", format: "json" });
const IDEMPOTENT = { [IDEMPOTENCY_META_KEY]: "run-1:step-1" };

let stateDir: string;
const pools: ServerPool[] = [];

/** A pool over the fixture server, as the worker builds one from a servers.yaml entry. */
function fixturePool(entry: Record<string, unknown> = {}, env: Record<string, string> = {}): ServerPool {
  const config: McpServerConfig = McpServerConfigSchema.parse({
    name: "fixture",
    transport: {
      type: "stdio",
      command: process.execPath,
      args: [FIXTURE],
      env: { FIXTURE_STATE_DIR: stateDir, ...env },
      cwd: stateDir,
    },
    timeout: 5_000,
    governance: { owner: "qa", data_classification: "internal", access_level: "write" },
    restart: { backoff: 50, maxBackoff: 500 },
    ...entry,
  });
  const pool = new ServerPool(config, { log });
  pools.push(pool);
  pool.start();
  return pool;
}

function call(
  pool: ServerPool,
  tool: string,
  args: Record<string, unknown> = {},
  options: { meta?: Record<string, unknown>; timeoutMs?: number } = {},
) {
  const meta = options.meta ?? IDEMPOTENT;
  return pool.run((connection, attemptTimeoutMs) => connection.callTool(tool, args, attemptTimeoutMs, meta), {
    timeoutMs: options.timeoutMs ?? pool.config.timeout,
    repeatable: IDEMPOTENCY_META_KEY in meta,
  });
}

function structured(result: CallToolResult): Record<string, unknown> {
  return result.structuredContent as Record<string, unknown>;
}

async function failureOf(promise: Promise<unknown>): Promise<LoomError> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof LoomError) return error;
    throw error;
  }
  throw new Error("expected the call to fail");
}

async function until<T>(
  read: () => T | Promise<T>,
  done: (value: T) => boolean,
  timeoutMs = 10_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await read();
    if (done(value)) return value;
    if (Date.now() > deadline)
      throw new Error(`condition not met within ${timeoutMs} ms: ${JSON.stringify(value)}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** A stateless Streamable HTTP MCP server on a free port whose `whoami` answers its name. */
async function startHttpReplica(name: string): Promise<{ url: string; server: Server }> {
  const server = createServer((request, response) => {
    const mcp = new McpServer({ name: `http-${name}`, version: "1.0.0" });
    mcp.registerTool("whoami", { description: "Which replica answers.", inputSchema: {} }, async () => ({
      content: [{ type: "text", text: name }],
      structuredContent: { name },
    }));
    const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined });
    response.on("close", () => void transport.close());
    void mcp.connect(transport).then(() => transport.handleRequest(request, response));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/mcp`, server };
}

const replicaHealth = (pool: ServerPool) => pool.health().versions.flatMap((version) => version.replicas);

beforeAll(() => {
  process.env.LOOM_TEST_SECRET = "do-not-leak";
  process.env.NATS_CREDS = "/secret/nats.creds";
});
afterAll(() => {
  delete process.env.LOOM_TEST_SECRET;
  delete process.env.NATS_CREDS;
});
afterEach(async () => {
  await Promise.all(pools.splice(0).map((pool) => pool.close()));
  await rm(stateDir, { recursive: true, force: true });
});

describe("mcp-worker - resilience per server (real fixture MCP servers)", () => {
  beforeEach(async () => {
    stateDir = await mkdtemp(join(tmpdir(), "loom-resilience-"));
  });

  it("retries a call whose server crashed, after the restart, and it succeeds", async () => {
    const pool = fixturePool({ retries: { max: 3, backoff: 100 } });
    const { result } = await call(pool, "flaky", { key: "a", failures: 2 });
    expect(structured(result).calls).toBe(3);
    expect(replicaHealth(pool)[0]?.restarts).toBeGreaterThanOrEqual(2);
  });

  it("does not retry a tool's own error result, nor a call that is not safe to repeat", async () => {
    const pool = fixturePool({ retries: { max: 3, backoff: 50 } });
    const { result } = await call(pool, "refuse");
    expect(result.isError).toBe(true);
    expect(await readFile(join(stateDir, "refuse.count"), "utf8")).toBe("1");

    const failure = await failureOf(call(pool, "flaky", { key: "b", failures: 1 }, { meta: {} }));
    expect(failure.code).toBe(ErrorCode.SERVER_UNAVAILABLE);
    expect(await readFile(join(stateDir, "flaky-b.count"), "utf8")).toBe("1");
  });

  it("opens the breaker after N failures with a fast typed error naming the server and the retry time, then closes", async () => {
    const pool = fixturePool({
      retries: { max: 0 },
      circuitBreaker: { failures: 2, halfOpenAfter: 1_500 },
    });
    await until(
      () => replicaHealth(pool)[0]?.state,
      (state) => state === "up",
    );
    for (let failure = 0; failure < 2; failure++) {
      expect((await failureOf(call(pool, "crash"))).code).toBe(ErrorCode.SERVER_UNAVAILABLE);
    }
    const started = performance.now();
    const fast = await failureOf(call(pool, "whoami"));
    expect(performance.now() - started).toBeLessThan(100);
    expect(fast.code).toBe(ErrorCode.SERVER_UNAVAILABLE);
    expect(fast.message).toMatch(
      /MCP server "fixture" is unavailable \(circuit open after 2 consecutive failures.*it is tried again at \d{4}-\d\d-\d\dT/,
    );
    expect(replicaHealth(pool)[0]?.breaker).toBe("open");
    expect(pool.health().state).toBe("down");

    await new Promise((resolve) => setTimeout(resolve, 1_600));
    const { result } = await call(pool, "whoami");
    expect(structured(result).pid).toEqual(expect.any(Number));
    expect(replicaHealth(pool)[0]?.breaker).toBe("closed");
  });

  it("holds the concurrency limit: the fixture never sees more calls at once, the overflow gets SERVER_BUSY", async () => {
    const pool = fixturePool({ concurrency: { max: 2, queue: 3 } });
    const outcomes = await Promise.allSettled(
      Array.from({ length: 7 }, () => call(pool, "sleep", { ms: 300 })),
    );
    const busy = outcomes.filter(
      (outcome) =>
        outcome.status === "rejected" && (outcome.reason as LoomError).code === ErrorCode.SERVER_BUSY,
    );
    expect(outcomes.filter((outcome) => outcome.status === "fulfilled")).toHaveLength(5);
    expect(busy).toHaveLength(2);
    expect((busy[0] as PromiseRejectedResult).reason.message).toMatch(
      /"fixture" is at its concurrency limit/,
    );
    expect(await readFile(join(stateDir, "max-in-flight"), "utf8")).toBe("2");
  });

  it("kills a server whose call exceeds its timeout and restarts it, so later calls are served", async () => {
    const pool = fixturePool({ retries: { max: 0 } });
    const before = await until(
      () => replicaHealth(pool)[0]?.pid,
      (pid) => pid !== undefined,
    );
    const failure = await failureOf(call(pool, "hang", {}, { timeoutMs: 300 }));
    expect(failure.code).toBe(ErrorCode.TOOL_TIMEOUT);
    await until(
      () => {
        try {
          process.kill(before as number, 0);
          return "alive";
        } catch {
          return "gone";
        }
      },
      (state) => state === "gone",
    );
    const after = await until(
      () => replicaHealth(pool)[0],
      (replica) => replica?.state === "up",
    );
    expect(after?.pid).not.toBe(before);
    expect(after?.restarts).toBe(1);
    expect(after?.lastError).toMatch(/killed: call timed out/);
    const { result } = await call(pool, "whoami");
    expect(structured(result).pid).toBe(after?.pid);
  });

  it("restarts a crashed server proactively, with backoff, and health shows the restarts and the error", async () => {
    const pool = fixturePool({ restart: { backoff: 100, maxBackoff: 1_000 } }, { FIXTURE_CRASH_STARTS: "3" });
    const up = await until(
      () => replicaHealth(pool)[0],
      (replica) => replica?.state === "up",
    );
    expect(up?.restarts).toBe(3);
    const pids = (await readFile(join(stateDir, "pids.log"), "utf8")).trim().split("\n");
    expect(pids).toHaveLength(1);

    // A crash with no call waiting: the replica comes back by itself.
    await failureOf(call(pool, "crash", {}, { meta: {} }));
    const back = await until(
      () => replicaHealth(pool)[0],
      (replica) => replica?.state === "up" && replica.restarts === 4,
    );
    expect(back?.lastError).toMatch(/exited unexpectedly|went away/);
    expect((await readFile(join(stateDir, "pids.log"), "utf8")).trim().split("\n")).toHaveLength(2);
  });

  it("starts a stdio server with only its configured environment and working directory", async () => {
    const pool = fixturePool({}, { GREETING: "hello" });
    const { result } = await call(pool, "environment");
    const { env, cwd } = structured(result) as { env: Record<string, string>; cwd: string };
    expect(cwd).toBe(stateDir);
    expect(env.GREETING).toBe("hello");
    expect(env.LOOM_TEST_SECRET).toBeUndefined();
    expect(env.NATS_CREDS).toBeUndefined();
    // The SDK adds only these to what the entry names (its getDefaultEnvironment).
    const allowed = new Set([
      "FIXTURE_STATE_DIR",
      "GREETING",
      "HOME",
      "LOGNAME",
      "PATH",
      "SHELL",
      "TERM",
      "USER",
    ]);
    expect(Object.keys(env).filter((key) => !allowed.has(key))).toEqual([]);
  });

  it("spreads calls over replicas (different processes) and skips a dead one", async () => {
    // Restarts wait long and calls are not retried: a call sent to the dead replica would fail.
    const pool = fixturePool({
      replicas: 2,
      retries: { max: 0 },
      restart: { backoff: 10_000, maxBackoff: 10_000 },
    });
    await until(
      () => replicaHealth(pool),
      (replicas) => replicas.every((replica) => replica.state === "up"),
    );
    const pids = new Set<number>();
    for (let index = 0; index < 6; index++) {
      pids.add(structured((await call(pool, "whoami")).result).pid as number);
    }
    expect(pids.size).toBe(2);

    // One replica dies; while it restarts every call goes to the other.
    const [first] = replicaHealth(pool);
    process.kill(first?.pid as number, "SIGKILL");
    await until(
      () => replicaHealth(pool)[0]?.state,
      (state) => state === "down",
    );
    const survivors = new Set<number>();
    for (let index = 0; index < 4; index++) {
      survivors.add(structured((await call(pool, "whoami")).result).pid as number);
    }
    expect([...survivors]).toEqual([replicaHealth(pool)[1]?.pid]);
  });

  it("http replicas from a list of URLs share the calls; one that stops answering is skipped", async () => {
    const a = await startHttpReplica("a");
    const b = await startHttpReplica("b");
    try {
      const pool = fixturePool({
        transport: { type: "http", url: a.url },
        replicas: [a.url, b.url],
        retries: { max: 2, backoff: 20 },
        circuitBreaker: { failures: 1, halfOpenAfter: 60_000 },
      });
      await until(
        () => replicaHealth(pool),
        (replicas) => replicas.every((replica) => replica.state === "up"),
      );
      const names = new Set<string>();
      for (let index = 0; index < 4; index++)
        names.add(structured((await call(pool, "whoami")).result).name as string);
      expect(names).toEqual(new Set(["a", "b"]));

      b.server.closeAllConnections();
      await new Promise<void>((resolve) => b.server.close(() => resolve()));
      const after: string[] = [];
      for (let index = 0; index < 4; index++)
        after.push(structured((await call(pool, "whoami")).result).name as string);
      expect(after).toEqual(["a", "a", "a", "a"]);
      const [replicaA, replicaB] = replicaHealth(pool);
      expect(replicaA?.state).toBe("up");
      expect(replicaB).toMatchObject({ state: "down", breaker: "open" });
      expect(replicaB?.lastError).toMatch(/MCP server "fixture" is unreachable/);
      expect(pool.health()).toMatchObject({ state: "degraded", transport: `http ${a.url}, http ${b.url}` });
    } finally {
      a.server.closeAllConnections();
      a.server.close();
    }
  });

  it("routes a weighted share of calls to each version and labels the metrics with it", async () => {
    const pool = fixturePool({
      versions: [
        { name: "v1", weight: 80 },
        {
          name: "v2",
          weight: 20,
          transport: {
            type: "stdio",
            command: process.execPath,
            args: [FIXTURE],
            env: { FIXTURE_STATE_DIR: stateDir, FIXTURE_VERSION: "v2" },
          },
        },
      ],
    });
    const counts = { v1: 0, v2: 0 };
    for (let index = 0; index < 200; index++) {
      const serverVersion = pool.chooseVersion();
      const { result, serverVersion: served } = await traceToolCall(
        { server: "fixture", tool: "whoami", serverVersion },
        async () => {
          const routed = await pool.run((connection, ms) => connection.callTool("whoami", {}, ms), {
            version: serverVersion,
            timeoutMs: 5_000,
            repeatable: true,
          });
          return { ...routed, isError: false };
        },
      );
      expect(served).toBe(serverVersion);
      expect(structured(result).version).toBe(served);
      counts[served as "v1" | "v2"]++;
    }
    expect(counts.v2).toBeGreaterThan(15);
    expect(counts.v2).toBeLessThan(70);
    expect(counts.v1 + counts.v2).toBe(200);

    const metrics = await registry.metrics();
    expect(metrics).toMatch(
      new RegExp(
        `loom_tool_calls_total\\{server="fixture",tool="whoami",outcome="ok",server_version="v2"\\} ${counts.v2}\\b`,
      ),
    );
    expect(metrics).toMatch(
      new RegExp(
        `loom_tool_calls_total\\{server="fixture",tool="whoami",outcome="ok",server_version="v1"\\} ${counts.v1}\\b`,
      ),
    );
    const versions = pool.health().versions;
    expect(versions.map((version) => [version.name, version.replicas[0]?.serverInfo?.version])).toEqual([
      ["v1", "fixture-v1"],
      ["v2", "fixture-v2"],
    ]);
  });
});

describe("mcp-worker - server health in KV and `loom servers list`", () => {
  let nats: NatsUsersServer;
  let logDir: string;
  let orchestrator: Stack[] = [];
  beforeAll(async () => {
    nats = await startNatsWithUsers();
    // `loom servers list` asks the orchestrators, which read the workers' records for the caller.
    logDir = await mkdtemp(join(tmpdir(), "loom-resilience-logs-"));
    orchestrator = await nats.startServices(["orchestrator"], { logDir });
  }, 60_000);
  afterAll(async () => {
    await Promise.all(orchestrator.map((stack) => stack.stop()));
    await nats?.[Symbol.asyncDispose]();
    if (logDir !== undefined) await rm(logDir, { recursive: true, force: true });
  });
  beforeEach(async () => {
    stateDir = await mkdtemp(join(tmpdir(), "loom-resilience-"));
  });

  it("a worker writes each server's health on change; the CLI shows it with governance, replicas and versions", async () => {
    // The worker's user writes the records; the CLI asks for them as the submitter, as under npm start.
    const nc = await nats.connectAs(NatsUser.MCP_WORKER);
    const kv = await new Kvm(nc).create(Buckets.SERVERS);
    const asCli = { cwd: REPO_ROOT, env: { ...process.env, LOOM_DATA_DIR: nats.dataDir } };
    const pool = fixturePool({ replicas: 2, versions: [{ name: "stable", weight: 100 }] });
    const reporter = new HealthReporter([pool], { kv, worker: "worker-1", log, debounceMs: 50 });
    reporter.start();
    try {
      await until(
        async () => (await kv.get("fixture.worker-1"))?.json<{ state: string }>()?.state,
        (state) => state === "up",
      );
      await failureOf(call(pool, "crash", {}, { meta: {} }));
      const record = await until(
        async () =>
          (await kv.get("fixture.worker-1"))?.json<{
            versions: Array<{ replicas: Array<{ restarts: number; state: string }> }>;
          }>(),
        (value) =>
          value?.versions[0]?.replicas.some((replica) => replica.restarts > 0 && replica.state === "up") ===
          true,
      );
      expect(record?.versions[0]?.replicas).toHaveLength(2);

      const { stdout } = await promisify(execFile)(
        process.execPath,
        [CLI, "--nats", nats.server.url, "servers", "list"],
        asCli,
      );
      expect(stdout).toMatch(/^SERVER\s+HEALTH\s+REPLICAS\s+VERSIONS\s+RESTARTS\s+CLASSIFICATION/m);
      expect(stdout).toMatch(
        /^fixture\s+up\s+2\/2\s+stable:100\s+1\s+internal\s+write\s+qa\s+stdio \S+ \S+resilience-server\.ts/m,
      );
      expect(stdout).not.toContain("FIXTURE_STATE_DIR");

      const json = await promisify(execFile)(
        process.execPath,
        [CLI, "--nats", nats.server.url, "servers", "list", "--json"],
        asCli,
      );
      const [summary] = JSON.parse(json.stdout);
      expect(summary).toMatchObject({
        server: "fixture",
        state: "up",
        replicas: { up: 2, total: 2 },
        restarts: 1,
      });

      // A worker that stops removes its records: it serves nothing any more.
      await reporter.close();
      expect((await kv.get("fixture.worker-1"))?.operation).not.toBe("PUT");
    } finally {
      await reporter.close();
      await nc.close();
    }
  });
});
