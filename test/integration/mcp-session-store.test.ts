import type { KV } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ErrorCode } from "../../schemas/errors.ts";
import { Buckets } from "../../schemas/subjects.ts";
import { openBucket } from "../../services/kit/index.ts";
import { SessionStore } from "../../services/orchestrator/mcp-gateway/index.ts";
import { MAX_SUBSCRIPTIONS } from "../../services/orchestrator/mcp-gateway/session-store.ts";
import { connectTo, type NatsServer, startNatsServer } from "../helpers/nats-server.ts";

const A_WHILE_AGO = new Date(Date.now() - 10 * 60_000).toISOString();

describe("mcp gateway sessions - resource links in KV", () => {
  let nats: NatsServer;
  let nc: NatsConnection;
  let kv: KV;
  let sessions: SessionStore;
  beforeAll(async () => {
    nats = await startNatsServer();
    nc = await connectTo(nats.url);
    kv = await openBucket(nc, Buckets.MCP_SESSIONS, { replicas: 1 });
    sessions = new SessionStore(kv);
  });
  afterAll(async () => {
    await nc?.close();
    await nats?.[Symbol.asyncDispose]();
  });
  const open = () =>
    sessions.create({ principal: "gail", protocolVersion: "2025-06-18", clientCapabilities: {} });

  it("links recorded by requests of one session at the same time are all kept", async () => {
    const session = await open();
    await Promise.all(
      Array.from({ length: 6 }, (_, index) =>
        sessions.rememberLinks(session.id, { [`demo://resource/session/${index}`]: "everything" }),
      ),
    );
    const links = (await sessions.get(session.id))?.links ?? {};
    expect(Object.keys(links).sort()).toEqual(
      Array.from({ length: 6 }, (_, index) => `demo://resource/session/${index}`),
    );
    expect(new Set(Object.values(links))).toEqual(new Set(["everything"]));
  });

  it("a request that read the session before a link was recorded does not drop it when it touches the session", async () => {
    const session = await open();
    const stale = { ...session, lastSeenAt: A_WHILE_AGO };
    await sessions.rememberLinks(session.id, { "demo://resource/session/kept": "everything" });
    await sessions.touch(stale);
    const touched = await sessions.get(session.id);
    expect(touched?.links).toEqual({ "demo://resource/session/kept": "everything" });
  });

  it("a session ended meanwhile is not brought back by recording a link", async () => {
    const session = await open();
    await sessions.delete(session.id);
    await sessions.rememberLinks(session.id, { "demo://resource/session/late": "everything" });
    expect(await sessions.get(session.id)).toBeUndefined();
  });

  it("subscriptions are kept per session, ended one by one, and bounded", async () => {
    const session = await open();
    await Promise.all([
      sessions.subscribe(session.id, "demo://resource/dynamic/text/1", "everything"),
      sessions.subscribe(session.id, "test://watched-resource", "conformance"),
    ]);
    expect((await sessions.get(session.id))?.subscriptions).toEqual({
      "demo://resource/dynamic/text/1": "everything",
      "test://watched-resource": "conformance",
    });
    expect(await sessions.unsubscribe(session.id, "test://watched-resource")).toBe("conformance");
    expect(await sessions.unsubscribe(session.id, "test://watched-resource")).toBeUndefined();
    expect((await sessions.get(session.id))?.subscriptions).toEqual({
      "demo://resource/dynamic/text/1": "everything",
    });
    for (let index = 2; index <= MAX_SUBSCRIPTIONS; index++) {
      await sessions.subscribe(session.id, `demo://resource/dynamic/text/${index}`, "everything");
    }
    await expect(sessions.subscribe(session.id, "demo://one-too-many", "everything")).rejects.toMatchObject({
      code: ErrorCode.LIMIT_EXCEEDED,
    });
    await sessions.subscribe(session.id, "demo://resource/dynamic/text/1", "everything");
  });
});
