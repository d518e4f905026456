import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer as createHttpServer, type Server } from "node:http";
import { createServer as createTcpServer, type Socket, type Server as TcpServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TaskState } from "../../schemas/a2a.ts";
import { ErrorCode } from "../../schemas/errors.ts";
import { allowListedFetch } from "../../services/orchestrator/a2a/outbound-fetch.ts";
import { OutboundAllowList, OutboundTargets } from "../../services/orchestrator/a2a/outbound-url.ts";
import { AttackClass, attack, control } from "../helpers/attack-tally.ts";
import { type AgentRoute, startEchoAgent } from "../helpers/echo-a2a-agent.ts";
import { type Loom, NatsUser, startLoom, tokenFor } from "../helpers/loom.ts";
import { freePort } from "../helpers/ports.ts";
import { type RunActors, type RunOutcome, submitAndWatch } from "../helpers/runs.ts";

/**
 * A caller who may run an inline workflow names the URL of a `delegate` step, and the Agent Card
 * at that URL names the interface Loom then posts to: both are requests Loom sends where a caller
 * says. Each attack aims one of them at an internal listener (by address, name, alternative IP
 * forms, path escapes, userinfo, a redirect from an allowed host) and must end its run with
 * DELEGATE_REFUSED while the internal listener sees no request at all; the port-scan oracle must
 * read the same whether a port is open or closed.
 */

const analyst = tokenFor("alice", "analyst");

/** A one-step workflow delegating to `url`. */
const delegating = (url: string, timeout = "5s") => ({
  id: "outbound",
  steps: [{ id: "remote", delegate: { url, skill: "echo", message: { ping: 1 } }, timeout }],
});

/** An HTTP listener on loopback that keeps the path of every request and answers 404. */
async function internalListener(port: number): Promise<{ server: Server; paths: string[] }> {
  const paths: string[] = [];
  const server = createHttpServer((req, res) => {
    paths.push(req.url ?? "");
    res.writeHead(404).end();
  });
  await new Promise<void>((resolve) => server.listen(port, "127.0.0.1", resolve));
  return { server, paths };
}

/** A TCP listener that takes connections and never answers (a filtered or stuck port). */
async function silentListener(port: number): Promise<{ server: TcpServer; sockets: Socket[] }> {
  const sockets: Socket[] = [];
  const server = createTcpServer((socket) => sockets.push(socket));
  await new Promise<void>((resolve) => server.listen(port, "127.0.0.1", resolve));
  return { server, sockets };
}

describe("security - outbound requests of delegate: {url} steps (LOOM_A2A_DELEGATE_ALLOW)", () => {
  let loom: Loom;
  let runs: RunActors;
  let ports: {
    agent: number;
    internal: number;
    closed: number;
    open: number;
    silent: number;
    closedOutside: number;
  };
  let agent: Awaited<ReturnType<typeof startEchoAgent>>;
  let internal: Awaited<ReturnType<typeof internalListener>>;
  let open: Awaited<ReturnType<typeof internalListener>>;
  let silent: Awaited<ReturnType<typeof silentListener>>;

  /** Interfaces a rogue card (served by the allowed host) names, by route name. */
  const rogueInterfaces = (): Array<[string, string]> => [
    ["loopback", `http://127.0.0.1:${ports.internal}/rpc`],
    ["localhost", `http://localhost:${ports.internal}/rpc`],
    ["ipv6-loopback", `http://[::1]:${ports.internal}/rpc`],
    ["hex-ip", `http://0x7f000001:${ports.internal}/rpc`],
    ["decimal-ip", `http://2130706433:${ports.internal}/rpc`],
    ["dot-dot", `http://127.0.0.1:${ports.agent}/agents/../admin`],
    ["userinfo", `http://127.0.0.1:${ports.agent}@127.0.0.1:${ports.internal}/agents/`],
    ["name-resolving-to-loopback", `http://localhost:${ports.agent}/named/rpc`],
    ["redirect-307", `http://127.0.0.1:${ports.agent}/agents/redirect-307/rpc`],
    ["redirect-302", `http://127.0.0.1:${ports.agent}/agents/redirect-302/rpc`],
  ];

  beforeAll(async () => {
    ports = {
      agent: await freePort(),
      internal: await freePort(),
      closed: await freePort(),
      open: await freePort(),
      silent: await freePort(),
      closedOutside: await freePort(),
    };
    const routes: Record<string, AgentRoute> = {
      good: { kind: "echo" },
      "redirect-307": { kind: "redirect", status: 307, location: `http://127.0.0.1:${ports.internal}/admin` },
      "redirect-302": { kind: "redirect", status: 302, location: `http://127.0.0.1:${ports.internal}/admin` },
    };
    for (const [name, interfaceUrl] of rogueInterfaces())
      routes[`rogue-${name}`] = { kind: "card", interfaceUrl };
    agent = await startEchoAgent(ports.agent, routes);
    internal = await internalListener(ports.internal);
    open = await internalListener(ports.open);
    silent = await silentListener(ports.silent);
    loom = await startLoom({
      env: {
        LOOM_A2A_DELEGATE_ALLOW: [
          `http://127.0.0.1:${ports.agent}/agents/`,
          // A name the operator allowed that resolves to loopback: refused unless named by address.
          `http://localhost:${ports.agent}/named/`,
          // Ports an operator allowed on purpose, for the oracle: closed, open but not A2A, silent.
          `http://127.0.0.1:${ports.closed}/`,
          `http://127.0.0.1:${ports.open}/`,
          `http://127.0.0.1:${ports.silent}/`,
        ].join(","),
      },
      readyTimeoutMs: 120_000,
    });
    runs = { submitter: await loom.connectAs(NatsUser.SUBMITTER), observer: loom.observer };
  }, 180_000);
  afterAll(async () => {
    await loom?.[Symbol.asyncDispose]();
    await agent?.[Symbol.asyncDispose]();
    internal?.server.close();
    open?.server.close();
    for (const socket of silent?.sockets ?? []) socket.destroy();
    silent?.server.close();
  });

  const run = (url: string, timeout?: string) =>
    submitAndWatch(runs, { workflow: delegating(url, timeout), token: analyst, timeoutMs: 60_000 });

  /** The run ended with DELEGATE_REFUSED naming the setting, and no internal listener saw a request. */
  const refusedQuietly = (outcome: RunOutcome) =>
    outcome.state !== TaskState.COMPLETED &&
    outcome.error?.code === ErrorCode.DELEGATE_REFUSED &&
    outcome.error.message.includes("LOOM_A2A_DELEGATE_ALLOW") &&
    internal.paths.length === 0 &&
    !agent.paths.some((path) => path.startsWith("/admin"));

  it("outbound requests - a delegation to an allowed agent completes", async () => {
    await control("a delegate step to an agent under LOOM_A2A_DELEGATE_ALLOW completes", async () => {
      const outcome = await run(`http://127.0.0.1:${ports.agent}/agents/good/`);
      return outcome.state === TaskState.COMPLETED && JSON.stringify(outcome.output).includes('"ping":1');
    });
  });

  const cardUrls: Array<[string, () => string]> = [
    ["a loopback address", () => `http://127.0.0.1:${ports.internal}/`],
    ["localhost", () => `http://localhost:${ports.internal}/`],
    ["IPv6 loopback", () => `http://[::1]:${ports.internal}/`],
    ["a hex IP", () => `http://0x7f000001:${ports.internal}/`],
    ["a decimal IP", () => `http://2130706433:${ports.internal}/`],
    ["a dot-dot escape from the allowed path", () => `http://127.0.0.1:${ports.agent}/agents/../admin/`],
    ["a percent-encoded dot-dot", () => `http://127.0.0.1:${ports.agent}/agents/%2e%2e/admin/`],
    [
      "userinfo naming the allowed host",
      () => `http://127.0.0.1:${ports.agent}@127.0.0.1:${ports.internal}/agents/good/`,
    ],
    ["userinfo before the allowed host", () => `http://admin:secret@127.0.0.1:${ports.agent}/agents/good/`],
    ["an allowed name that resolves to loopback", () => `http://localhost:${ports.agent}/named/`],
    [
      "an allowed host that answers 307 to an internal port",
      () => `http://127.0.0.1:${ports.agent}/agents/redirect-307/`,
    ],
    [
      "an allowed host that answers 302 to an internal port",
      () => `http://127.0.0.1:${ports.agent}/agents/redirect-302/`,
    ],
  ];

  it.each(cardUrls)("outbound requests - a card URL at %s is refused", async (name, url) => {
    await attack(
      AttackClass.OUTBOUND_REQUESTS,
      `a delegate step's card URL at ${name} is refused`,
      async () => refusedQuietly(await run(url())),
    );
  });

  it("outbound requests - an interface URL a card names is refused at every internal target", async () => {
    for (const [name] of rogueInterfaces()) {
      await attack(
        AttackClass.OUTBOUND_REQUESTS,
        `an interface URL a card names at ${name} is refused`,
        async () => refusedQuietly(await run(`http://127.0.0.1:${ports.agent}/agents/rogue-${name}/`)),
      );
    }
    // The cards were read (the allowed host is reachable), and nothing they named was.
    expect(agent.paths.filter((path) => path.includes("/agents/rogue-")).length).toBeGreaterThanOrEqual(8);
  });

  it("outbound requests - a workflow naming an internal agent is refused when applied, before any request", async () => {
    const dir = await mkdtemp(join(tmpdir(), "loom-outbound-"));
    try {
      const apply = async (id: string, url: string) => {
        const file = join(dir, `${id}.yaml`);
        await writeFile(
          file,
          `id: ${id}\nsteps:\n  - { id: remote, delegate: { url: "${url}", message: hi } }\n`,
        );
        return loom.cli(["workflow", "apply", file], { token: tokenFor("ada", "admin") });
      };
      const refused = await apply("to-internal", `http://127.0.0.1:${ports.internal}/`);
      await attack(
        AttackClass.OUTBOUND_REQUESTS,
        "a workflow naming an internal agent is refused when applied",
        async () =>
          refused.code === 1 &&
          refused.stderr.includes("DELEGATE_REFUSED") &&
          refused.stderr.includes("LOOM_A2A_DELEGATE_ALLOW") &&
          internal.paths.length === 0,
      );
      await control("a workflow naming an allowed agent is applied", async () => {
        const applied = await apply("to-allowed", `http://127.0.0.1:${ports.agent}/agents/good/`);
        return applied.code === 0 && applied.stdout.includes("to-allowed v1 registered");
      });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("outbound requests - closed, open and silent ports read the same (no port-scan oracle)", async () => {
    const samePort = (outcome: RunOutcome) =>
      `${outcome.error?.code}: ${outcome.error?.message.replace(/127\.0\.0\.1:\d+/g, "127.0.0.1:PORT")}`;
    const allowed = await Promise.all([
      run(`http://127.0.0.1:${ports.closed}/`, "2s"),
      run(`http://127.0.0.1:${ports.open}/`, "2s"),
      run(`http://127.0.0.1:${ports.silent}/`, "2s"),
    ]);
    await attack(
      AttackClass.OUTBOUND_REQUESTS,
      "an allowed port that is closed, open but not A2A, or silent gives one and the same error",
      async () =>
        allowed.every((outcome) => outcome.error?.code === ErrorCode.AGENT_UNAVAILABLE) &&
        new Set(allowed.map(samePort)).size === 1,
    );
    const outside = await Promise.all([
      run(`http://127.0.0.1:${ports.closedOutside}/`),
      run(`http://127.0.0.1:${ports.internal}/`),
    ]);
    await attack(
      AttackClass.OUTBOUND_REQUESTS,
      "a port outside the list gives one and the same refusal, closed or open",
      async () =>
        outside.every((outcome) => outcome.error?.code === ErrorCode.DELEGATE_REFUSED) &&
        new Set(outside.map(samePort)).size === 1 &&
        internal.paths.length === 0,
    );
  });

  it("outbound requests - a name that resolves outside when checked and inside when connected (DNS rebinding) reaches nothing", async () => {
    // A rebinding DNS server answers the allow-list's check with a public address and the
    // connection's own lookup with loopback: the check's resolver stands in for the first answer,
    // the system's resolution of `localhost` is the second.
    const rebinding = OutboundAllowList.parse(
      OutboundTargets.DELEGATE,
      [`http://localhost:${ports.internal}/`],
      async () => ["93.184.216.34"],
    );
    await attack(
      AttackClass.OUTBOUND_REQUESTS,
      "a host name rebound to loopback between the check and the connection is not connected to",
      async () => {
        const reached = await allowListedFetch(rebinding)(`http://localhost:${ports.internal}/admin`).then(
          () => true,
          () => false,
        );
        return !reached && internal.paths.length === 0;
      },
    );
    await control("an allowed listener named by its address is reached through the same fetch", async () => {
      const literal = OutboundAllowList.parse(OutboundTargets.DELEGATE, [
        `http://127.0.0.1:${ports.internal}/`,
      ]);
      const response = await allowListedFetch(literal)(`http://127.0.0.1:${ports.internal}/control`);
      const reached = response.status === 404 && internal.paths.includes("/control");
      internal.paths.length = 0;
      return reached;
    });
  });
});
