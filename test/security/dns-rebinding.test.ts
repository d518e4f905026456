import { mkdtemp, rm } from "node:fs/promises";
import { request } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ErrorCode } from "../../schemas/errors.ts";
import { DEV_ISSUER } from "../../services/kit/dev-issuer.ts";
import { AttackClass, attack, control } from "../helpers/attack-tally.ts";
import { launchConsoleBrowser } from "../helpers/console-browser.ts";
import { type Listener, listenersOf } from "../helpers/listeners.ts";
import { type Loom, startLoom } from "../helpers/loom.ts";
import { freePort } from "../helpers/ports.ts";

/** The name the attacker's DNS answers with 127.0.0.1 once the victim's browser has its page. */
const ATTACKER = "attacker.example";
/** A name the operator adds through LOOM_HTTP_ALLOWED_HOSTS, and the public URL's. */
const ADDED = "loom-edge.internal";
const PUBLIC = "loom.public.test";

interface Answer {
  status: number;
  text: string;
}

/** One request with exactly these Host and Origin headers, as a browser would send them. */
function send(
  port: number,
  path: string,
  headers: Record<string, string>,
  body?: { type: string; text: string },
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const sent = request(
      {
        host: "127.0.0.1",
        port,
        path,
        method: body === undefined ? "GET" : "POST",
        agent: false,
        headers: body === undefined ? headers : { ...headers, "content-type": body.type },
      },
      (answer) => {
        let text = "";
        answer.setEncoding("utf8");
        answer.on("data", (chunk: string) => {
          text += chunk;
          // An event stream (the console's live views, MCP) would never end: its first event says enough.
          const stream = answer.headers["content-type"]?.startsWith("text/event-stream");
          if (stream && /^data:.*\n\n/m.test(text)) answer.destroy();
        });
        answer.on("close", () => resolve({ status: answer.statusCode ?? 0, text }));
      },
    );
    sent.on("error", reject);
    sent.end(body?.text);
  });
}

/** A route of a listener: how to call it, and what its legitimate answer looks like. */
interface Route {
  name: string;
  path: string;
  body?: { type: string; text: string };
  token?: () => string;
  /** Headers the route's protocol asks for. */
  headers?: Record<string, string>;
  /** The answer a caller on an allowed name gets: the route was reached and did its work. */
  served: (answer: Answer) => boolean;
}

const json = (value: unknown) => ({ type: "application/json", text: JSON.stringify(value) });

/** Refused before any route: the status and error code of the guard, and nothing else in the body. */
function refusedWith(answer: Answer, status: number, code: ErrorCode): boolean {
  if (answer.status !== status) return false;
  const body = JSON.parse(answer.text) as { error?: { code?: string; message?: string } };
  return body.error?.code === code && Object.keys(body).length === 1 && !answer.text.includes("eyJ");
}

/**
 * DNS rebinding against every HTTP listener of a stack in dev mode, as `npm start` runs it: a page
 * on attacker.example, whose name then resolves to 127.0.0.1, is same-origin with whatever listens
 * there, so the browser sends its requests with `Host: attacker.example:<port>` and, on POSTs, that
 * Origin. Every route of the orchestrator's edge and every service's /metrics is attacked that
 * way, and from a foreign page on the real name (its Origin); the same requests on 127.0.0.1,
 * localhost, a name added through LOOM_HTTP_ALLOWED_HOSTS and the public URL's host are served.
 */
describe("security - dns rebinding: every HTTP listener answers only to its own names", () => {
  let loom: Loom;
  let dataDir: string;
  let edge: number;
  let listeners: Listener[];
  let alice = "";
  let aliceRun = "";

  beforeAll(async () => {
    dataDir = await mkdtemp(join(tmpdir(), "loom-rebinding-"));
    edge = await freePort();
    loom = await startLoom({
      env: {
        LOOM_A2A_PORT: String(edge),
        LOOM_A2A_PUBLIC_URL: `http://${PUBLIC}:${edge}`,
        LOOM_HTTP_ALLOWED_HOSTS: ADDED,
        // Dev mode: the console's dev sign-in and the dev token endpoint are on.
        LOOM_AUTH_PUBLIC_KEYS: "",
        LOOM_AUTH_ISSUER: DEV_ISSUER,
        LOOM_DATA_DIR: dataDir,
      },
    });
    listeners = await listenersOf(loom);
  }, 120_000);
  afterAll(async () => {
    await loom?.[Symbol.asyncDispose]();
    await rm(dataDir, { recursive: true, force: true });
  });

  const local = (port: number) => ({ host: `127.0.0.1:${port}`, origin: `http://127.0.0.1:${port}` });
  const signIn = async (subject: string, roles: string[]) => {
    const answer = await send(edge, "/console/api/dev-sign-in", local(edge), json({ subject, roles }));
    expect(answer.status, answer.text).toBe(200);
    return (JSON.parse(answer.text) as { token: string }).token;
  };

  it("dns rebinding - control: alice signs in on 127.0.0.1 and starts a run through the console API", async () => {
    alice = await signIn("alice", ["analyst"]);
    await control("alice starts a run on 127.0.0.1", async () => {
      const answer = await send(
        edge,
        "/console/api/runs",
        { ...local(edge), authorization: `Bearer ${alice}` },
        json({ workflow: "hello", input: { contactId: "c-1" } }),
      );
      aliceRun = answer.status === 202 ? (JSON.parse(answer.text) as { runId: string }).runId : "";
      return aliceRun !== "";
    });
  });

  it("dns rebinding - the red team's two requests: no dev admin token, no run", async () => {
    const rebound = { host: `${ATTACKER}:${edge}`, origin: `http://${ATTACKER}:${edge}` };
    await attack(AttackClass.DNS_REBINDING, "a rebound page mints a dev admin token", async () => {
      const answer = await send(
        edge,
        "/console/api/dev-sign-in",
        rebound,
        json({ subject: "mallory", roles: ["admin"] }),
      );
      return refusedWith(answer, 421, ErrorCode.HOST_NOT_ALLOWED) && !answer.text.includes("token");
    });
    const admin = await signIn("mallory", ["admin"]);
    await attack(
      AttackClass.DNS_REBINDING,
      "a rebound page reads alice's run with an admin token",
      async () => {
        const answer = await send(edge, `/console/api/runs/${aliceRun}`, {
          host: rebound.host,
          authorization: `Bearer ${admin}`,
        });
        return refusedWith(answer, 421, ErrorCode.HOST_NOT_ALLOWED) && !answer.text.includes(aliceRun);
      },
    );
    await control("the same read on 127.0.0.1 is served", async () => {
      const answer = await send(edge, `/console/api/runs/${aliceRun}`, {
        host: `127.0.0.1:${edge}`,
        authorization: `Bearer ${admin}`,
      });
      return answer.status === 200 && answer.text.includes(aliceRun);
    });
  });

  /** Every route of the orchestrator's edge. */
  const edgeRoutes = (): Route[] => {
    const withRun = (text: string) => text.includes(aliceRun);
    const ok = (answer: Answer) => answer.status === 200;
    return [
      {
        name: "console dev sign-in",
        path: "/console/api/dev-sign-in",
        body: json({ subject: "mallory", roles: ["admin"] }),
        served: (answer) => ok(answer) && answer.text.includes('"token"'),
      },
      { name: "console page", path: "/console", served: (answer) => ok(answer) && answer.text.includes("<") },
      { name: "console config", path: "/console/api/config", served: ok },
      {
        name: "console run list",
        path: "/console/api/runs",
        token: () => alice,
        served: (answer) => ok(answer) && withRun(answer.text),
      },
      {
        name: "console run",
        path: `/console/api/runs/${aliceRun}`,
        token: () => alice,
        served: (answer) => ok(answer) && withRun(answer.text),
      },
      {
        name: "console live run list",
        path: "/console/api/runs/live",
        token: () => alice,
        served: (answer) => ok(answer) && withRun(answer.text),
      },
      {
        name: "A2A JSON-RPC GetTask",
        path: "/a2a/jsonrpc",
        body: json({ jsonrpc: "2.0", id: 1, method: "GetTask", params: { id: aliceRun } }),
        token: () => alice,
        headers: { "a2a-version": "1.0" },
        served: (answer) => ok(answer) && withRun(answer.text) && !answer.text.includes('"error"'),
      },
      {
        name: "A2A REST task",
        path: `/a2a/rest/tasks/${aliceRun}`,
        token: () => alice,
        headers: { "a2a-version": "1.0" },
        served: (answer) => ok(answer) && withRun(answer.text),
      },
      {
        name: "agent card",
        path: "/.well-known/agent-card.json",
        served: (answer) => ok(answer) && answer.text.includes('"skills"'),
      },
      {
        name: "MCP gateway initialize",
        path: "/mcp",
        body: json({
          jsonrpc: "2.0",
          id: 1,
          method: "initialize",
          params: {
            protocolVersion: "2025-06-18",
            capabilities: {},
            clientInfo: { name: "t", version: "1" },
          },
        }),
        token: () => alice,
        headers: { accept: "application/json, text/event-stream" },
        served: (answer) => ok(answer) && answer.text.includes("serverInfo"),
      },
      {
        name: "MCP protected resource metadata",
        path: "/.well-known/oauth-protected-resource/mcp",
        served: (answer) => ok(answer) && answer.text.includes("authorization_servers"),
      },
      {
        name: "dev authorization server metadata",
        path: "/.well-known/oauth-authorization-server",
        served: (answer) => ok(answer) && answer.text.includes("token_endpoint"),
      },
      {
        name: "dev token endpoint",
        path: "/oauth/token",
        body: {
          type: "application/x-www-form-urlencoded",
          text: "grant_type=client_credentials&client_id=nobody&client_secret=none",
        },
        // No dev clients are configured: the endpoint itself answers with its OAuth error.
        served: (answer) => answer.status === 401 && answer.text.includes("invalid_client"),
      },
      { name: "an unknown path", path: "/no-such-route", served: (answer) => answer.status === 404 },
    ];
  };
  const opsRoutes = (): Route[] => [
    {
      name: "/metrics",
      path: "/metrics",
      served: (answer) => answer.status === 200 && answer.text.includes("# TYPE"),
    },
    { name: "/healthz", path: "/healthz", served: (answer) => answer.status === 200 },
    { name: "/readyz", path: "/readyz", served: (answer) => answer.status === 200 },
  ];

  /** Each listener with its routes. */
  const targets = () =>
    listeners.map((listener) => ({
      listener,
      routes: listener.port === edge ? edgeRoutes() : opsRoutes(),
    }));
  const headersOf = (route: Route, host: string, origin?: string) => ({
    ...route.headers,
    host,
    ...(origin === undefined ? {} : { origin }),
    ...(route.token === undefined ? {} : { authorization: `Bearer ${route.token()}` }),
  });

  it("dns rebinding - every route of every listener refuses a rebound Host, with its Origin and without", async () => {
    expect(listeners.map((listener) => listener.service).sort()).toEqual([
      "acp-policy",
      "llm-agent",
      "mcp-worker",
      "orchestrator",
      "orchestrator",
    ]);
    for (const { listener, routes } of targets()) {
      const rebound = `${ATTACKER}:${listener.port}`;
      for (const route of routes) {
        const where = `${listener.service} ${route.name}`;
        await attack(AttackClass.DNS_REBINDING, `${where}: rebound Host and Origin`, async () =>
          refusedWith(
            await send(listener.port, route.path, headersOf(route, rebound, `http://${rebound}`), route.body),
            421,
            ErrorCode.HOST_NOT_ALLOWED,
          ),
        );
        await attack(AttackClass.DNS_REBINDING, `${where}: rebound Host, no Origin`, async () =>
          refusedWith(
            await send(listener.port, route.path, headersOf(route, rebound), route.body),
            421,
            ErrorCode.HOST_NOT_ALLOWED,
          ),
        );
      }
    }
  });

  it("dns rebinding - every route of every listener refuses a foreign page's Origin on its own name", async () => {
    for (const { listener, routes } of targets()) {
      for (const route of routes) {
        await attack(
          AttackClass.DNS_REBINDING,
          `${listener.service} ${route.name}: Origin of another site`,
          async () =>
            refusedWith(
              await send(
                listener.port,
                route.path,
                headersOf(route, `127.0.0.1:${listener.port}`, `http://${ATTACKER}:${listener.port}`),
                route.body,
              ),
              403,
              ErrorCode.ORIGIN_NOT_ALLOWED,
            ),
        );
      }
    }
  });

  it("dns rebinding - in chromium: a page under the rebound name gets a refusal, not a token; the console's own page signs in", async () => {
    // The attacker's DNS now answers 127.0.0.1: the browser itself picks the Host and Origin.
    const browser = await launchConsoleBrowser([`--host-resolver-rules=MAP ${ATTACKER} 127.0.0.1`]);
    try {
      const page = await browser.newPage();
      const signInFromPage = () =>
        page.evaluate(
          async (body) => {
            const answer = await fetch("/console/api/dev-sign-in", {
              method: "POST",
              headers: { "content-type": "application/json" },
              body,
            });
            return { status: answer.status, text: await answer.text() };
          },
          JSON.stringify({ subject: "mallory", roles: ["admin"] }),
        );
      const loaded = await page.goto(`http://${ATTACKER}:${edge}/console`);
      await attack(
        AttackClass.DNS_REBINDING,
        "chromium: the console's page under the rebound name",
        async () =>
          refusedWith(
            { status: loaded?.status() ?? 0, text: (await loaded?.text()) ?? "" },
            421,
            ErrorCode.HOST_NOT_ALLOWED,
          ),
      );
      await attack(
        AttackClass.DNS_REBINDING,
        "chromium: the rebound page's same-origin fetch of a dev admin token",
        async () => refusedWith(await signInFromPage(), 421, ErrorCode.HOST_NOT_ALLOWED),
      );
      await page.goto(`http://127.0.0.1:${edge}/console`);
      await control("chromium: the console's own page on 127.0.0.1 signs in", async () => {
        const answer = await signInFromPage();
        return answer.status === 200 && answer.text.includes('"token"');
      });
    } finally {
      await browser.close();
    }
  });

  it("dns rebinding - look-alike names, the unspecified address and odd Origins are refused at the dev sign-in", async () => {
    const signInRoute = edgeRoutes()[0] as Route;
    for (const host of [
      `localhost.${ATTACKER}:${edge}`,
      `127.0.0.1.${ATTACKER}:${edge}`,
      `${ADDED}.${ATTACKER}:${edge}`,
      `localhost.:${edge}`,
      `0.0.0.0:${edge}`,
      `[::]:${edge}`,
      // The unspecified address spelled IPv4-mapped, IPv4-compatible and uncompressed.
      `[::ffff:0:0]:${edge}`,
      `[::ffff:0.0.0.0]:${edge}`,
      `[::0.0.0.0]:${edge}`,
      `[0:0:0:0:0:ffff:0:0]:${edge}`,
    ]) {
      await attack(AttackClass.DNS_REBINDING, `dev sign-in with Host ${host}`, async () =>
        refusedWith(
          await send(edge, signInRoute.path, { host, origin: `http://${host}` }, signInRoute.body),
          421,
          ErrorCode.HOST_NOT_ALLOWED,
        ),
      );
    }
    // Control beside the unspecified forms: a mapped address that is not unspecified names this host.
    const mapped = `[::ffff:127.0.0.1]:${edge}`;
    await control(`dev sign-in with Host ${mapped}`, async () =>
      signInRoute.served(
        await send(
          edge,
          signInRoute.path,
          headersOf(signInRoute, mapped, `http://${mapped}`),
          signInRoute.body,
        ),
      ),
    );
    for (const origin of ["null", `https://localhost.${ATTACKER}`, `http://127.0.0.1.${ATTACKER}:${edge}`]) {
      await attack(AttackClass.DNS_REBINDING, `dev sign-in with Origin ${origin}`, async () =>
        refusedWith(
          await send(edge, signInRoute.path, { host: `127.0.0.1:${edge}`, origin }, signInRoute.body),
          403,
          ErrorCode.ORIGIN_NOT_ALLOWED,
        ),
      );
    }
  });

  it("dns rebinding - control: every route is served on 127.0.0.1, localhost, the added name and the public URL's host", async () => {
    for (const { listener, routes } of targets()) {
      const names = ["127.0.0.1", "localhost", ADDED, ...(listener.port === edge ? [PUBLIC] : [])];
      for (const route of routes) {
        for (const name of names) {
          const host = `${name}:${listener.port}`;
          await control(`${listener.service} ${route.name} on ${host} with its Origin`, async () =>
            route.served(
              await send(listener.port, route.path, headersOf(route, host, `http://${host}`), route.body),
            ),
          );
        }
      }
    }
  });
});
