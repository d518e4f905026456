import { setTimeout as sleep } from "node:timers/promises";
import type { NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { WorkflowListContract } from "../../schemas/contracts.ts";
import { ErrorCode } from "../../schemas/errors.ts";
import { toolTaskInboxOf } from "../../schemas/nats-users.ts";
import { ReplyInbox, request } from "../../services/kit/index.ts";
import { connectTo, type NatsServer, startNatsServer } from "../helpers/nats-server.ts";

const PREFIX = toolTaskInboxOf("orchestrator");

/** A ReplyInbox on a real nats-server: one subscription answers many requests, each its own. */
describe("reply inbox - requests answered on an inbox subtree of their own", () => {
  let server: NatsServer;
  let nc: NatsConnection;
  let inbox: ReplyInbox;

  beforeAll(async () => {
    server = await startNatsServer();
    nc = await connectTo(server.url, { inboxPrefix: "_INBOX.orchestrator" });
    inbox = new ReplyInbox(nc, PREFIX);
  });
  afterAll(async () => {
    inbox?.close();
    await nc?.close();
    await server?.[Symbol.asyncDispose]();
  });

  it("reply inbox - concurrent requests each get their own answer, on the inbox's subtree", async () => {
    const replies: string[] = [];
    // Answers later the earlier it was asked: a mix-up between requests would show.
    const responder = nc.subscribe("echo", {
      callback: (_error, msg) => {
        replies.push(msg.reply ?? "");
        const n = Number(msg.string());
        void sleep(200 - n * 10).then(() => msg.respond(String(n)));
      },
    });
    try {
      const answers = await Promise.all(
        Array.from({ length: 20 }, (_, n) =>
          inbox
            .request("echo", new TextEncoder().encode(String(n)), { timeout: 5_000 })
            .then((msg) => msg.string()),
        ),
      );
      expect(answers).toEqual(Array.from({ length: 20 }, (_, n) => String(n)));
      expect(replies.every((reply) => reply.startsWith(`${PREFIX}.`))).toBe(true);
    } finally {
      responder.unsubscribe();
    }
  });

  it("reply inbox - through request(): no responder is AGENT_UNAVAILABLE and silence is TIMEOUT", async () => {
    const unserved = await request(
      nc,
      "nobody.serves.this",
      WorkflowListContract,
      {},
      { timeoutMs: 2_000, inbox },
    ).then(
      () => undefined,
      (error: { code?: string }) => error.code,
    );
    expect(unserved).toBe(ErrorCode.AGENT_UNAVAILABLE);
    const silent = nc.subscribe("silent");
    try {
      const started = Date.now();
      const code = await request(nc, "silent", WorkflowListContract, {}, { timeoutMs: 300, inbox }).then(
        () => undefined,
        (error: { code?: string }) => error.code,
      );
      expect(code).toBe(ErrorCode.TIMEOUT);
      expect(Date.now() - started).toBeLessThan(2_000);
    } finally {
      silent.unsubscribe();
    }
  });

  it("reply inbox - closing fails a request still waiting at once", async () => {
    const closing = new ReplyInbox(nc, PREFIX);
    const silent = nc.subscribe("silent.too");
    try {
      const waiting = closing.request("silent.too", new Uint8Array(), { timeout: 30_000 }).then(
        () => "answered",
        (error: Error) => error.name,
      );
      await nc.flush();
      closing.close();
      expect(await waiting).toBe("RequestError");
    } finally {
      silent.unsubscribe();
    }
  });
});
