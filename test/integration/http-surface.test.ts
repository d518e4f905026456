import { spawn } from "node:child_process";
import { once } from "node:events";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { jetstreamManager } from "@nats-io/jetstream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { toolTaskInboxOf } from "../../schemas/nats-users.ts";
import { Buckets } from "../../schemas/subjects.ts";
import {
  createLogger,
  ensureStream,
  JsonSchemaValidator,
  MuxedRequests,
  StreamDefinitions,
} from "../../services/kit/index.ts";
import { openBucket } from "../../services/kit/jetstream.ts";
import { OutboundAllowList, OutboundTargets } from "../../services/orchestrator/a2a/outbound-url.ts";
import { readOrchestratorConfig } from "../../services/orchestrator/config.ts";
import { DefinitionStore } from "../../services/orchestrator/definition-store.ts";
import { type HttpSurfaceOptions, openHttpSurface } from "../../services/orchestrator/http-surface.ts";
import { DEFAULT_LIMITS } from "../../services/orchestrator/limits.ts";
import { RunStore } from "../../services/orchestrator/run-store.ts";
import { WorkflowCatalog } from "../../services/orchestrator/workflow-catalog.ts";
import { REPO_ROOT } from "../helpers/loom.ts";
import { connectTo, type NatsServer, startNatsServer } from "../helpers/nats-server.ts";
import { freePort } from "../helpers/ports.ts";

const log = createLogger({ service: "http-surface-test", level: "silent" });
const CONNECTION = "http-surface-test";

describe("orchestrator - the HTTP side opens whole or not at all", () => {
  let ns: NatsServer;
  let monitorPort: number;

  beforeAll(async () => {
    monitorPort = await freePort();
    ns = await startNatsServer({ args: ["-m", String(monitorPort)] });
  });
  afterAll(async () => {
    await ns?.[Symbol.asyncDispose]();
  });

  /** The subscriptions the server holds for the test's connection: watchers and consumers show here. */
  const subscriptions = async () => {
    const connz = (await (await fetch(`http://127.0.0.1:${monitorPort}/connz?subs=1`)).json()) as {
      connections: Array<{ name?: string; subscriptions: number }>;
    };
    return connz.connections.find((connection) => connection.name === CONNECTION)?.subscriptions ?? -1;
  };
  /** Waits (the server learns of unsubscriptions a moment later) until the count is `expected`. */
  const settlesAt = async (expected: number) => {
    const deadline = Date.now() + 5_000;
    let count = await subscriptions();
    while (count !== expected && Date.now() < deadline) {
      await sleep(100);
      count = await subscriptions();
    }
    return count;
  };

  it("http surface - when a part fails to open, the parts opened before it are closed again", async () => {
    await using nc = await connectTo(ns.url, { name: CONNECTION });
    const jsm = await jetstreamManager(nc);
    await ensureStream(jsm, StreamDefinitions.events, 1);
    const bucket = (name: (typeof Buckets)[keyof typeof Buckets]) => openBucket(nc, name, { replicas: 1 });
    const runsKv = await bucket(Buckets.RUNS);
    const config = readOrchestratorConfig({});
    const toolTasks = new MuxedRequests(nc, toolTaskInboxOf("orchestrator"));
    const options = (catalog: HttpSurfaceOptions["buckets"]["catalog"]): HttpSurfaceOptions => ({
      nc,
      jsm,
      config,
      webhookAllowList: OutboundAllowList.parse(OutboundTargets.WEBHOOK, []),
      toolTasks,
      buckets: {
        push: pushKv,
        tools: toolsKv,
        catalog,
        sessions: sessionsKv,
        runs: runsKv,
      },
      runs: new RunStore(runsKv, new DefinitionStore(resultsKv)),
      workflows: new WorkflowCatalog(DEFAULT_LIMITS, OutboundAllowList.parse(OutboundTargets.DELEGATE, [])),
      validator: new JsonSchemaValidator(),
      publicUrl: "http://127.0.0.1:7410",
      log,
    });
    const [pushKv, toolsKv, catalogKv, sessionsKv, resultsKv] = await Promise.all([
      bucket(Buckets.PUSH),
      bucket(Buckets.TOOLS),
      bucket(Buckets.CATALOG),
      bucket(Buckets.MCP_SESSIONS),
      bucket(Buckets.RESULTS),
    ]);
    const before = await subscriptions();

    // Control: opened whole, the surface holds watchers and consumers, and closing it lets them go.
    const opened = await openHttpSurface(options(catalogKv));
    const whileOpen = await subscriptions();
    expect(whileOpen).toBeGreaterThan(before);
    await opened.close();
    expect(await settlesAt(before)).toBe(before);

    // A later part (the MCP gateway's catalog) fails: its bucket's stream is gone.
    const goneKv = await bucket(Buckets.MEMORY);
    await jsm.streams.delete(`KV_${Buckets.MEMORY}`);
    await expect(openHttpSurface(options(goneKv))).rejects.toThrow();
    expect(await settlesAt(before)).toBe(before);
  });
});

/** Starts a service with these settings, expecting it to stop at once: its exit code and output. */
async function failedStart(
  service: string,
  env: Record<string, string>,
): Promise<{ code: number | null; output: string }> {
  const child = spawn(process.execPath, [join(REPO_ROOT, `services/${service}/main.ts`)], {
    cwd: REPO_ROOT,
    env: { ...process.env, NATS_URL: "nats://127.0.0.1:1", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  child.stdout.on("data", (chunk: Buffer) => {
    output += chunk.toString();
  });
  child.stderr.on("data", (chunk: Buffer) => {
    output += chunk.toString();
  });
  const [code] = (await once(child, "exit")) as [number | null];
  return { code, output };
}

describe("orchestrator - a bad outbound allow-list fails the start", () => {
  it.each(["LOOM_A2A_WEBHOOK_ALLOW", "LOOM_A2A_DELEGATE_ALLOW"])(
    "orchestrator - a bad %s entry stops the start with CONFIG_INVALID naming it",
    async (setting) => {
      const { code, output } = await failedStart("orchestrator", {
        [setting]: "https://ok.example.com/,https://user:secret@agents.example.com/",
      });
      expect(code).toBe(1);
      expect(output).toContain("CONFIG_INVALID");
      expect(output).toContain(
        `${setting}: entry "https://user:secret@agents.example.com/" is not an http(s) URL without userinfo`,
      );
    },
  );
});

describe("every service - a bad HTTP allow-list fails the start", () => {
  it.each(["orchestrator", "acp-policy", "mcp-worker", "llm-agent"])(
    "%s - a host with a scheme, an origin with a path, or the old LOOM_MCP_ALLOWED_ORIGINS stops the start with CONFIG_INVALID naming it",
    async (service) => {
      for (const [env, named] of [
        [
          { LOOM_HTTP_ALLOWED_HOSTS: "ok.example.com,http://loom.example.com" },
          "LOOM_HTTP_ALLOWED_HOSTS: http://loom.example.com is not a host name",
        ],
        [
          { LOOM_HTTP_ALLOWED_ORIGINS: "https://ide.example.com/app" },
          "LOOM_HTTP_ALLOWED_ORIGINS: https://ide.example.com/app is not an origin",
        ],
        [
          { LOOM_MCP_ALLOWED_ORIGINS: "http://localhost" },
          "LOOM_MCP_ALLOWED_ORIGINS was renamed LOOM_HTTP_ALLOWED_ORIGINS",
        ],
      ] as const) {
        const { code, output } = await failedStart(service, env);
        expect(code, output).toBe(1);
        expect(output).toContain("CONFIG_INVALID");
        expect(output).toContain(named);
      }
    },
  );
});
