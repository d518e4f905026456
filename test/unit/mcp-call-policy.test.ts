import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { StreamableHTTPError } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { describe, expect, it } from "vitest";
import { ErrorCode } from "../../schemas/errors.ts";
import { McpServerConfigSchema } from "../../schemas/mcp.ts";
import type { ServerHealth } from "../../schemas/mcp-health.ts";
import { HEALTH_STALE_AFTER_MS } from "../../schemas/mcp-health.ts";
import { IDEMPOTENCY_META_KEY } from "../../schemas/steps.ts";
import { LoomError } from "../../services/kit/errors.ts";
import { summarizeServers } from "../../services/kit/server-health.ts";
import {
  asServerFailure,
  chooseWeighted,
  isServerFailure,
  jitteredBackoff,
  pickReplica,
  safeToRepeat,
} from "../../services/mcp-worker/call-policy.ts";
import { loadServerList } from "../../services/mcp-worker/server-config.ts";
import { describeTransport, serverLayout } from "../../services/mcp-worker/server-layout.ts";

const GOVERNANCE = { owner: "team", data_classification: "internal", access_level: "read" } as const;

describe("mcp call policy - what is retried", () => {
  it("only a server failure counts, never a tool error, refused input, or an open circuit", () => {
    expect(isServerFailure(new LoomError(ErrorCode.SERVER_UNAVAILABLE, "gone"))).toBe(true);
    expect(isServerFailure(new LoomError(ErrorCode.TOOL_TIMEOUT, "slow"))).toBe(true);
    expect(isServerFailure(new LoomError(ErrorCode.TOOL_ERROR, "failed"))).toBe(false);
    expect(isServerFailure(new LoomError(ErrorCode.INVALID_INPUT, "bad"))).toBe(false);
    expect(
      isServerFailure(new LoomError(ErrorCode.SERVER_UNAVAILABLE, "open", { details: { circuit: "open" } })),
    ).toBe(false);
    expect(isServerFailure(new Error("plain"))).toBe(false);
  });

  it("an http server that refuses connections or answers 5xx is unavailable; a 4xx stays a tool error", () => {
    const refused = new LoomError(ErrorCode.TOOL_ERROR, "x failed", { cause: new TypeError("fetch failed") });
    expect((asServerFailure(refused, "erp") as LoomError).code).toBe(ErrorCode.SERVER_UNAVAILABLE);
    const failing = new LoomError(ErrorCode.TOOL_ERROR, "x failed", {
      cause: new StreamableHTTPError(503, "unavailable"),
    });
    expect((asServerFailure(failing, "erp") as LoomError).message).toMatch(/MCP server "erp" is unreachable/);
    const forbidden = new LoomError(ErrorCode.TOOL_ERROR, "x failed", {
      cause: new StreamableHTTPError(403, "forbidden"),
    });
    expect(asServerFailure(forbidden, "erp")).toBe(forbidden);
  });

  it("a call is repeated only with an idempotency key or a read-only / idempotent tool", () => {
    expect(safeToRepeat({ [IDEMPOTENCY_META_KEY]: "run:step" })).toBe(true);
    expect(safeToRepeat({}, { annotations: { readOnlyHint: true } })).toBe(true);
    expect(safeToRepeat({}, { annotations: { idempotentHint: true } })).toBe(true);
    expect(safeToRepeat({}, { annotations: { destructiveHint: true } })).toBe(false);
    expect(safeToRepeat({})).toBe(false);
  });

  it("backoff grows with jitter and stays under its cap", () => {
    const medians = [0, 1, 2, 3].map((step) => {
      const samples = Array.from({ length: 200 }, () => {
        let backoff = jitteredBackoff({ backoff: 100, maxBackoff: 5_000 }).next();
        for (let index = 0; index < step; index++) backoff = backoff.next(undefined);
        return backoff.duration;
      }).sort((a, b) => a - b);
      expect(new Set(samples).size).toBeGreaterThan(100);
      expect(Math.max(...samples)).toBeLessThanOrEqual(5_000);
      return samples[100] ?? 0;
    });
    expect(medians[3]).toBeGreaterThan((medians[0] ?? 0) * 3);
  });
});

describe("mcp call policy - where a call goes", () => {
  it("versions get calls in proportion to their weights; a weight of 0 gets none", () => {
    const versions = [
      { name: "v1", weight: 90 },
      { name: "v2", weight: 10 },
      { name: "off", weight: 0 },
    ];
    const counts = new Map<string, number>();
    for (let index = 0; index < 1_000; index++) {
      const { name } = chooseWeighted(versions, index / 1_000);
      counts.set(name, (counts.get(name) ?? 0) + 1);
    }
    expect(Object.fromEntries(counts)).toEqual({ v1: 900, v2: 100 });
  });

  it("the least busy available replica wins, idle ones take turns, a dead one only when nothing runs", () => {
    const replica = (name: string, available: boolean, inFlight: number, startable = !available) => ({
      name,
      available,
      startable,
      inFlight,
    });
    const busy = [replica("a", true, 3), replica("b", true, 1), replica("c", false, 0)];
    expect(pickReplica(busy, 0)?.name).toBe("b");
    const idle = [replica("a", true, 0), replica("b", true, 0)];
    expect([0, 1, 2, 3].map((cursor) => pickReplica(idle, cursor)?.name)).toEqual(["a", "b", "a", "b"]);
    expect(pickReplica([replica("a", false, 0), replica("b", false, 0)], 1)?.name).toBe("b");
    expect(pickReplica([replica("a", false, 0, false)], 0)).toBeUndefined();
  });
});

describe("mcp server layout", () => {
  it("replicas and versions: each version takes the server's transport and count unless it names its own", () => {
    const config = McpServerConfigSchema.parse({
      name: "search",
      transport: { type: "stdio", command: "node", args: ["v1.ts"], env: { TOKEN: "secret" } },
      replicas: 2,
      versions: [
        { name: "v1", weight: 9 },
        {
          name: "v2",
          weight: 1,
          transport: { type: "stdio", command: "node", args: ["v2.ts"] },
          replicas: 1,
        },
      ],
      governance: GOVERNANCE,
    });
    expect(config.retries).toEqual({ max: 2, backoff: 200, maxBackoff: 5_000 });
    expect(config.circuitBreaker).toEqual({ failures: 5, halfOpenAfter: 30_000 });
    expect(config.concurrency).toEqual({ max: 32, queue: 4096 });
    const layout = serverLayout(config);
    expect(layout.map((version) => [version.name, version.weight, version.replicas.length])).toEqual([
      ["v1", 9, 2],
      ["v2", 1, 1],
    ]);
    expect(layout[1]?.replicas[0]?.transport).toMatchObject({ args: ["v2.ts"] });
    expect(describeTransport(config)).toBe("stdio node v1.ts, stdio node v2.ts");
  });

  it("an http server's replica URLs become one replica each, shown without credentials", () => {
    const config = McpServerConfigSchema.parse({
      name: "erp",
      transport: { type: "http", url: "https://erp.example.com/mcp", headers: { Authorization: "Bearer x" } },
      replicas: ["https://user:pw@a.example.com/mcp?token=t", "https://b.example.com/mcp"],
      governance: GOVERNANCE,
    });
    const [version] = serverLayout(config);
    expect(version?.name).toBe("default");
    expect(version?.replicas.map((replica) => replica.transport)).toMatchObject([
      { url: "https://user:pw@a.example.com/mcp?token=t" },
      { url: "https://b.example.com/mcp" },
    ]);
    expect(describeTransport(config)).toBe("http https://a.example.com/mcp, http https://b.example.com/mcp");
  });

  it("a server list refuses replica URLs on a stdio server and loads the rest", async () => {
    const dir = await mkdtemp(join(tmpdir(), "loom-layout-"));
    try {
      const file = join(dir, "servers.yaml");
      await writeFile(
        file,
        `servers:
  - name: bad
    transport: { type: stdio, command: node }
    replicas: ["http://a.example.com/mcp"]
    governance: { owner: team, data_classification: internal, access_level: read }
  - name: good
    transport: { type: stdio, command: node, args: [./server.ts] }
    versions: [{ name: v2, weight: 1, transport: { type: stdio, command: node, args: [./v2.ts] } }]
    governance: { owner: team, data_classification: internal, access_level: read }
`,
      );
      const list = await loadServerList(file);
      expect(list.refused).toEqual([
        { name: "bad", reason: expect.stringMatching(/a list of replica URLs needs an http transport/) },
      ]);
      expect(list.servers[0]?.versions?.[0]?.transport).toMatchObject({
        args: [join(dir, "v2.ts")],
        cwd: dir,
      });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe("loom servers list - folding workers' health records", () => {
  const record = (worker: string, state: ServerHealth["state"], updatedAt: string): ServerHealth => ({
    server: "search",
    worker,
    state,
    transport: "stdio node search.ts",
    governance: GOVERNANCE,
    inFlight: 0,
    queued: 0,
    versions: [
      {
        name: "default",
        weight: 1,
        replicas: [
          {
            id: "default/1",
            state: state === "up" ? "up" : "down",
            breaker: "closed",
            inFlight: 0,
            restarts: 2,
            ...(state === "up" ? {} : { lastError: "the server exited unexpectedly" }),
          },
        ],
      },
    ],
    updatedAt,
  });
  const now = Date.parse("2026-12-01T13:00:00.000Z");
  const fresh = new Date(now - 1_000).toISOString();

  it("workers that disagree make a server degraded; replicas and restarts add up", () => {
    const [summary] = summarizeServers([record("w1", "up", fresh), record("w2", "down", fresh)], now);
    expect(summary).toMatchObject({
      server: "search",
      state: "degraded",
      replicas: { up: 1, total: 2 },
      restarts: 4,
      lastError: "the server exited unexpectedly",
    });
  });

  it("a record not refreshed for a minute comes from a gone worker and is left out", () => {
    const stale = new Date(now - HEALTH_STALE_AFTER_MS - 1).toISOString();
    const [summary] = summarizeServers([record("w1", "up", fresh), record("w2", "down", stale)], now);
    expect(summary?.state).toBe("up");
    expect(summarizeServers([record("w2", "down", stale)], now)[0]?.state).toBe("unknown");
  });
});
