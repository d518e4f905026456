import { type ChildProcess, execFile, spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse } from "yaml";
import { stopProcess } from "../../services/cli/nats-server.ts";
import { natsUserFolders } from "../../services/cli/nats-users.ts";
import { NatsUser, REPO_ROOT, tokenFor } from "../helpers/loom.ts";
import { type NatsUsersServer, startNatsWithUsers } from "../helpers/nats-users.ts";
import { type OtlpReceiver, startOtlpReceiver } from "../helpers/otlp-receiver.ts";
import { freePort } from "../helpers/ports.ts";
import { TEST_AUTH_ENV } from "../helpers/tokens.ts";

const run = promisify(execFile);
const LOOM_SERVICES = ["orchestrator", "acp-policy", "mcp-worker", "llm-agent"] as const;

const compose = parse(readFileSync(join(REPO_ROOT, "docker-compose.yml"), "utf8"), { merge: true }) as {
  services: Record<
    string,
    {
      command: string[];
      environment: Record<string, string>;
      volumes: Array<string | { source: string; target: string; volume?: { subpath?: string } }>;
    }
  >;
};
/** The Dockerfile's HEALTHCHECK, as the container would run it. */
const HEALTHCHECK = JSON.parse(
  /HEALTHCHECK [^\n]*\\\n\s*CMD (\[.*\])/.exec(
    readFileSync(join(REPO_ROOT, "infra/Dockerfile"), "utf8"),
  )?.[1] ?? "[]",
) as string[];

/**
 * Each Loom service of docker-compose.yml started here with its compose command and environment.
 * What only exists inside compose is swapped for a local stand-in: the hosts `nats` and `jaeger`
 * (a test nats-server with Loom's users, and an OTLP receiver), the mounted password file (the
 * service's own, which `loom nats passwords` makes from that server's passwords as for compose), one port per
 * service instead of 9464 in every container, and the test identity provider instead of the dev
 * key volume.
 */
describe("compose services - each service's compose command runs locally with its compose environment", () => {
  let nats: NatsUsersServer;
  let otlp: OtlpReceiver;
  const children: ChildProcess[] = [];
  const ports = new Map<string, number>();

  beforeAll(async () => {
    nats = await startNatsWithUsers();
    // As compose's one-shot `nats-users` does: one folder per user, each service mounts its own.
    await run(process.execPath, ["services/cli/bin.ts", "nats", "passwords", "--data-dir", nats.dataDir], {
      cwd: REPO_ROOT,
    });
    otlp = await startOtlpReceiver();
    for (const name of LOOM_SERVICES) {
      const service = compose.services[name];
      if (service === undefined) throw new Error(`no ${name} in docker-compose.yml`);
      // The folder of the passwords volume the service mounts, as that folder of the data dir.
      const mount = service.volumes.find(
        (volume) => typeof volume !== "string" && volume.source === "nats-passwords",
      );
      if (typeof mount !== "object") throw new Error(`${name} mounts no nats-passwords folder`);
      const passwords = join(natsUserFolders(nats.dataDir), mount.volume?.subpath ?? "");
      const port = await freePort();
      ports.set(name, port);
      const env = Object.fromEntries(
        Object.entries(service.environment).map(([key, value]) => [
          key,
          value
            .replace("nats://nats:4222", nats.server.url)
            .replace(`${mount.target}/`, `${passwords}/`)
            .replace("http://jaeger:4318", otlp.endpoint)
            // `${VAR:-default}` as compose reads it with VAR unset on the host.
            .replace(/\$\{\w+:-([^}]*)\}/g, "$1"),
        ]),
      );
      const [command, ...args] = service.command;
      const child = spawn(command === "node" ? process.execPath : (command ?? ""), args, {
        cwd: REPO_ROOT,
        env: {
          PATH: process.env.PATH ?? "",
          HOME: process.env.HOME ?? "",
          ...env,
          ...TEST_AUTH_ENV,
          LOOM_HTTP_PORT: String(port),
          OTEL_BSP_SCHEDULE_DELAY: "100",
        },
        stdio: "ignore",
      });
      children.push(child);
    }
  });
  afterAll(async () => {
    await Promise.all(children.map((child) => stopProcess(child)));
    await otlp?.[Symbol.asyncDispose]();
    await nats?.[Symbol.asyncDispose]();
  });

  it("compose services - the image's healthcheck passes for each, and a run's spans reach the compose tracing endpoint", async () => {
    expect(HEALTHCHECK.slice(0, 2)).toEqual(["node", "-e"]);
    for (const name of LOOM_SERVICES) {
      const deadline = Date.now() + 30_000;
      for (;;) {
        const healthy = await run(process.execPath, HEALTHCHECK.slice(1), {
          env: { LOOM_HTTP_PORT: String(ports.get(name)) },
        }).then(
          () => true,
          () => false,
        );
        if (healthy) break;
        if (Date.now() > deadline) throw new Error(`${name} never passed the image's healthcheck`);
        await sleep(200);
      }
    }
    // Ready does not wait for the worker to list its MCP servers' tools: retry until a run completes.
    const { stdout } = await eventuallyCompleted(nats.urlAs(NatsUser.SUBMITTER));
    const { traceId } = JSON.parse(stdout);
    const deadline = Date.now() + 15_000;
    const services = () =>
      new Set(otlp.spans.filter((span) => span.traceId === traceId).map((span) => span.service));
    while (services().size < 5 && Date.now() < deadline) await sleep(100);
    expect([...services()].sort()).toEqual([
      "acp-policy",
      "mcp-crm",
      "mcp-time",
      "mcp-worker",
      "orchestrator",
    ]);
  });
});

async function eventuallyCompleted(natsUrl: string): Promise<{ stdout: string }> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const result = await run(
      process.execPath,
      [
        join(REPO_ROOT, "services/cli/bin.ts"),
        "--nats",
        natsUrl,
        "submit",
        "hello",
        "--input",
        '{"contactId":"c-1"}',
        "--watch",
        "--json",
      ],
      { env: { ...process.env, LOOM_TOKEN: tokenFor("alice", "analyst"), OTEL_TRACES_EXPORTER: "none" } },
    ).catch((error: { stdout?: string }) => ({ stdout: error.stdout ?? "{}" }));
    if (JSON.parse(result.stdout.trim().split("\n").at(-1) ?? "{}").state === "completed") return result;
    if (Date.now() > deadline) throw new Error(`hello never completed: ${result.stdout}`);
    await sleep(500);
  }
}
