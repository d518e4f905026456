import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, it } from "vitest";
import { AttackClass, attack, control } from "../helpers/attack-tally.ts";
import { eventually } from "../helpers/eventually.ts";
import { type GatewayStack, startGateway } from "../helpers/gateway.ts";
import { signJwt, tokenFor, validClaims } from "../helpers/tokens.ts";

const WATCHED = "demo://resource/dynamic/text/11";
const RESIDENCY = "eu-data-stays-in-eu";

const admin = tokenFor("ann", "admin");
const otherAdmin = tokenFor("abe", "admin");
const viewer = tokenFor("vera", "viewer");
const usAnalyst = signJwt(validClaims("sam", ["analyst"], { region: "us" }));

describe("security - resource subscriptions through the MCP gateway", () => {
  let gateway: GatewayStack;
  let mcpUrl: URL;
  const subscriber = (token: string) => gateway.session(token, { name: "subscription-attacks" });

  const refusedWith = async (text: RegExp, call: () => Promise<unknown>) => {
    try {
      await call();
      return false;
    } catch (error) {
      return text.test(String(error));
    }
  };

  beforeAll(async () => {
    gateway = await startGateway({
      prefix: "loom-subscription-attacks-",
      servers: ["time", "crm", "everything"],
      tools: ["time.get_time", "crm.get_contact", "everything.echo"],
      readyTimeoutMs: 120_000,
    });
    mcpUrl = gateway.mcpUrl;
  }, 180_000);
  afterAll(async () => {
    await gateway?.[Symbol.asyncDispose]();
  });

  it("subscriptions - a caller subscribes only to what it may read (role, region), nothing unknown", async () => {
    const asViewer = await subscriber(viewer);
    await attack(
      AttackClass.RESOURCE_FACTS,
      "a viewer subscribes to a resource of a server it may not read",
      () => refusedWith(/denied|default-deny/i, () => asViewer.client.subscribeResource({ uri: WATCHED })),
    );
    const asUs = await subscriber(usAnalyst);
    await attack(AttackClass.RESOURCE_FACTS, "a US analyst subscribes to an EU contact", () =>
      refusedWith(new RegExp(RESIDENCY), () => asUs.client.subscribeResource({ uri: "crm://contacts/c-1" })),
    );
    await attack(AttackClass.RESOURCE_FACTS, "a subscription to a URI no server lists or templates", () =>
      refusedWith(/not found/, () => asViewer.client.subscribeResource({ uri: "secret://anything" })),
    );
    await attack(
      AttackClass.RESOURCE_FACTS,
      "a refused viewer's GET stream hears of the resource it was refused",
      async () => {
        const owner = await subscriber(admin);
        await owner.client.subscribeResource({ uri: WATCHED });
        await owner.client.callTool({ name: "everything.toggle-subscriber-updates", arguments: {} });
        await eventually(
          () => owner.updates,
          (heard) => heard.includes(WATCHED),
        );
        await sleep(500);
        await owner.client.callTool({ name: "everything.toggle-subscriber-updates", arguments: {} });
        await owner.client.unsubscribeResource({ uri: WATCHED });
        return asViewer.updates.length === 0;
      },
    );
    await control("an admin subscribes to the same resource", async () => {
      const asAdmin = await subscriber(admin);
      await asAdmin.client.subscribeResource({ uri: WATCHED });
      await asAdmin.client.unsubscribeResource({ uri: WATCHED });
      return true;
    });
  }, 120_000);

  it("subscriptions - one session's subscription reaches no other session, and no one else can end it", async () => {
    const ann = await subscriber(admin);
    const abe = await subscriber(otherAdmin);
    await ann.client.subscribeResource({ uri: WATCHED });
    await attack(
      AttackClass.TENANT_ISOLATION,
      "another principal unsubscribes the first one's resource",
      () => refusedWith(/not subscribed/, () => abe.client.unsubscribeResource({ uri: WATCHED })),
    );
    await attack(
      AttackClass.TENANT_ISOLATION,
      "another principal opens the GET stream of the first one's session",
      async () => {
        const response = await fetch(mcpUrl, {
          headers: {
            Authorization: `Bearer ${otherAdmin}`,
            Accept: "text/event-stream",
            "Mcp-Session-Id": ann.sessionId,
          },
        });
        await response.body?.cancel();
        return response.status === 403;
      },
    );
    await ann.client.callTool({ name: "everything.toggle-subscriber-updates", arguments: {} });
    try {
      await control("the subscriber hears its updates, also after the other's unsubscribe", async () => {
        await eventually(
          () => ann.updates,
          (heard) => heard.includes(WATCHED),
        );
        return true;
      });
      await attack(
        AttackClass.TENANT_ISOLATION,
        "a session that never subscribed hears the other's updates",
        async () => {
          await sleep(6_000);
          return abe.updates.length === 0 && ann.updates.length >= 2;
        },
      );
    } finally {
      await ann.client.callTool({ name: "everything.toggle-subscriber-updates", arguments: {} });
    }
  }, 120_000);

  it("subscriptions - a GET stream ends when the token that opened it expires", async () => {
    /** Opens a session and its GET stream with `token`; resolves with how long the stream lasted, capped at `capMs`. */
    const streamLifetime = async (token: string, capMs: number): Promise<number> => {
      const headers = {
        Authorization: `Bearer ${token}`,
        "Content-Type": "application/json",
        Accept: "application/json, text/event-stream",
      };
      const initialized = await fetch(mcpUrl, {
        method: "POST",
        headers,
        body: JSON.stringify({
          jsonrpc: "2.0",
          id: 1,
          method: "initialize",
          params: {
            protocolVersion: "2025-06-18",
            capabilities: {},
            clientInfo: { name: "expiry", version: "1" },
          },
        }),
      });
      await initialized.body?.cancel();
      const sessionId = initialized.headers.get("mcp-session-id") ?? "";
      const started = Date.now();
      const abort = new AbortController();
      const cap = setTimeout(() => abort.abort(), capMs);
      try {
        const stream = await fetch(mcpUrl, {
          headers: {
            ...headers,
            Accept: "text/event-stream",
            "Mcp-Session-Id": sessionId,
            "Mcp-Protocol-Version": "2025-06-18",
          },
          signal: abort.signal,
        });
        // A stream refused outright proves nothing about expiry.
        if (stream.status !== 200) return -1;
        const reader = stream.body?.getReader();
        while (reader !== undefined && !(await reader.read()).done) {}
      } catch {
        // Aborted at the cap: the stream was still open.
      } finally {
        clearTimeout(cap);
      }
      return Date.now() - started;
    };
    const now = Math.floor(Date.now() / 1000);
    const shortLived = signJwt(validClaims("ann", ["admin"], { exp: now + 4 }));
    await attack(AttackClass.TOKENS, "a GET stream keeps delivering after its token expired", async () => {
      const lasted = await streamLifetime(shortLived, 15_000);
      return lasted > 1_000 && lasted < 10_000;
    });
    await control("a stream opened with a token valid for an hour stays open", async () => {
      const lasted = await streamLifetime(admin, 6_000);
      return lasted >= 6_000;
    });
  }, 60_000);
});
