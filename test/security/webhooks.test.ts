import { randomUUID } from "node:crypto";
import { createServer, type Server } from "node:http";
import { setTimeout as sleep } from "node:timers/promises";
import { Message, SendMessageRequest } from "@a2a-js/sdk";
import { type Client, ClientFactory } from "@a2a-js/sdk/client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AttackClass, attack, control } from "../helpers/attack-tally.ts";
import { type Loom, startLoom, tokenFor } from "../helpers/loom.ts";
import { freePort } from "../helpers/ports.ts";

const analyst = { serviceParameters: { Authorization: `Bearer ${tokenFor("alice", "analyst")}` } };

/** A SendMessage starting `hello` with a webhook at `url`. */
function sendWithWebhook(url: string) {
  return SendMessageRequest.fromJSON({
    message: Message.toJSON(
      Message.fromJSON({
        messageId: randomUUID(),
        role: "ROLE_USER",
        parts: [{ data: { contactId: "c-2" } }],
        metadata: { skill: "hello" },
      }),
    ),
    configuration: { taskPushNotificationConfig: { url, token: "hook-token" } },
  });
}

/** An HTTP listener on loopback that keeps the path of every request and answers with `answer`. */
async function listener(
  port: number,
  answer: (path: string) => { status: number; location?: string },
): Promise<{ server: Server; paths: string[] }> {
  const paths: string[] = [];
  const server = createServer((req, res) => {
    req.resume();
    req.on("end", () => {
      paths.push(req.url ?? "");
      const { status, location } = answer(req.url ?? "");
      res.writeHead(status, location === undefined ? {} : { location }).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(port, "127.0.0.1", resolve));
  return { server, paths };
}

describe("security - webhooks reach only allowed listeners (LOOM_A2A_WEBHOOK_ALLOW)", () => {
  let loom: Loom;
  let client: Client;
  let hookPort: number;
  let internalPort: number;
  let hooks: Awaited<ReturnType<typeof listener>>;
  let internal: Awaited<ReturnType<typeof listener>>;

  beforeAll(async () => {
    const [a2aPort, hook, inside] = [await freePort(), await freePort(), await freePort()];
    hookPort = hook;
    internalPort = inside;
    // The allowed host redirects when asked to, to a listener nobody allowed.
    hooks = await listener(hookPort, (path) => {
      const redirect = /\/redirect-(\d{3})$/.exec(path)?.[1];
      return redirect === undefined
        ? { status: 200 }
        : { status: Number(redirect), location: `http://127.0.0.1:${internalPort}/internal-admin` };
    });
    internal = await listener(internalPort, () => ({ status: 200 }));
    loom = await startLoom({
      env: {
        LOOM_A2A_PORT: String(a2aPort),
        // An address for the hooks, and a name that resolves to loopback.
        LOOM_A2A_WEBHOOK_ALLOW: `http://127.0.0.1:${hookPort}/hooks/,http://localhost:${hookPort}/named/`,
      },
    });
    client = await new ClientFactory().createFromUrl(`http://127.0.0.1:${a2aPort}`);
  }, 120_000);
  afterAll(async () => {
    await loom?.[Symbol.asyncDispose]();
    hooks?.server.close();
    internal?.server.close();
  });

  /** Whether registering `url` was refused with an error about the webhook (no run started). */
  const registrationRefused = async (url: string) =>
    client.sendMessage(sendWithWebhook(url), analyst).then(
      () => false,
      (error: Error) => /webhook/.test(error.message),
    );

  const escapes: Array<[string, () => string]> = [
    ["a dot-dot segment", () => `http://127.0.0.1:${hookPort}/hooks/../internal-admin`],
    ["percent-encoded dot-dot", () => `http://127.0.0.1:${hookPort}/hooks/%2e%2e/internal-admin`],
    ["a percent-encoded slash", () => `http://127.0.0.1:${hookPort}/hooks/..%2finternal-admin`],
    ["a double-encoded dot-dot", () => `http://127.0.0.1:${hookPort}/hooks/%252e%252e/internal-admin`],
    ["backslashes", () => `http://127.0.0.1:${hookPort}/hooks\\..\\internal-admin`],
    ["a longer first segment", () => `http://127.0.0.1:${hookPort}/hooks-internal/admin`],
    [
      "userinfo naming the allowed host",
      () => `http://127.0.0.1:${hookPort}@127.0.0.1:${internalPort}/hooks/`,
    ],
    ["userinfo before the allowed host", () => `http://admin:secret@127.0.0.1:${hookPort}/hooks/run`],
    ["another port", () => `http://127.0.0.1:${internalPort}/hooks/run`],
    ["another scheme", () => `https://127.0.0.1:${hookPort}/hooks/run`],
    ["IPv6 loopback", () => `http://[::1]:${hookPort}/hooks/run`],
    [
      "IPv4-mapped IPv6 loopback on another port",
      () => `http://[::ffff:127.0.0.1]:${internalPort}/hooks/run`,
    ],
    ["a decimal IP on another port", () => `http://2130706433:${internalPort}/hooks/run`],
    ["a hex IP on another port", () => `http://0x7f000001:${internalPort}/hooks/run`],
    ["an allowed name that resolves to loopback", () => `http://localhost:${hookPort}/named/run`],
  ];

  it.each(escapes)("webhooks - %s is refused at registration", async (name, url) => {
    await attack(AttackClass.WEBHOOKS, `a webhook URL with ${name} is refused at registration`, () =>
      registrationRefused(url()),
    );
  });

  it("webhooks - a redirect from an allowed host is a failed delivery, never followed", async () => {
    const statuses = [301, 302, 307, 308];
    const started = Date.now();
    const ok = await client.sendMessage(sendWithWebhook(`http://127.0.0.1:${hookPort}/hooks/run`), analyst);
    for (const status of statuses) {
      await client.sendMessage(
        sendWithWebhook(`http://127.0.0.1:${hookPort}/hooks/redirect-${status}`),
        analyst,
      );
    }
    const redirected = () => statuses.every((status) => hooks.paths.includes(`/hooks/redirect-${status}`));
    while (!redirected() && Date.now() - started < 20_000) await sleep(100);
    // Long enough for a redelivery of the failed events too.
    await sleep(2_500);
    await control("an allowed webhook URL receives its task's events", async () => {
      return "id" in ok && hooks.paths.filter((path) => path === "/hooks/run").length >= 2;
    });
    for (const status of statuses) {
      await attack(
        AttackClass.WEBHOOKS,
        `a ${status} from an allowed host to an internal listener is not followed`,
        async () => hooks.paths.includes(`/hooks/redirect-${status}`) && internal.paths.length === 0,
      );
    }
    expect(internal.paths).toEqual([]);
  });
});
