import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import {
  type NatsConnection,
  NoRespondersError,
  PermissionViolationError,
  RequestError,
  TimeoutError,
} from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { WorkflowListContract } from "../../schemas/contracts.ts";
import { ErrorCode } from "../../schemas/errors.ts";
import { inboxPrefixOf, toolTaskInboxOf } from "../../schemas/nats-users.ts";
import { casWrite, isBrokerFailure, MuxedRequests, request } from "../../services/kit/index.ts";
import { withMuxedRequests } from "../../services/kit/muxed-requests.ts";
import { connectTo, type NatsServer, startNatsServer } from "../helpers/nats-server.ts";
import { NatsUser, startNatsWithUsers } from "../helpers/nats-users.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** What a request ended with: its answer's text, or its error's class and the class of its cause. */
async function outcome(request: Promise<{ data: Uint8Array }>): Promise<string> {
  try {
    return decoder.decode((await request).data);
  } catch (error) {
    const cause = (error as Error).cause;
    return `${(error as Error).constructor.name}${cause instanceof Error ? ` < ${cause.constructor.name}` : ""}`;
  }
}

describe("kit - muxed requests over a real nats-server", () => {
  let ns: NatsServer;
  let raw: NatsConnection;
  let nc: NatsConnection;
  let responder: NatsConnection;

  beforeAll(async () => {
    ns = await startNatsServer({ args: ["-js"] });
    raw = await connectTo(ns.url);
    nc = withMuxedRequests(raw, undefined);
    responder = await connectTo(ns.url);
    responder.subscribe("test.echo", {
      callback: (_error, message) => {
        const text = decoder.decode(message.data);
        // Answers out of order: the later of two requests is answered first.
        setTimeout(() => message.respond(encoder.encode(`echo ${text}`)), text === "slow" ? 50 : 0);
      },
    });
    responder.subscribe("test.silent", { callback: () => {} });
    await responder.flush();
  });

  afterAll(async () => {
    await responder?.close();
    await raw?.close();
    await ns?.[Symbol.asyncDispose]();
  });

  it("requests - each request gets its own answer, whatever order they come in", async () => {
    const answers = await Promise.all(
      ["slow", "a", "b", ...Array.from({ length: 100 }, (_, n) => `n${n}`)].map((text) =>
        outcome(nc.request("test.echo", encoder.encode(text), { timeout: 2_000 })),
      ),
    );
    expect(answers.slice(0, 3)).toEqual(["echo slow", "echo a", "echo b"]);
    expect(answers.slice(3)).toEqual(Array.from({ length: 100 }, (_, n) => `echo n${n}`));
  });

  it("requests - no responders fails at once as nats.js does, a broker failure a caller retries", async () => {
    const started = performance.now();
    const failure = await nc.request("test.nobody", encoder.encode("x"), { timeout: 5_000 }).catch((e) => e);
    expect(performance.now() - started).toBeLessThan(1_000);
    expect(failure).toBeInstanceOf(RequestError);
    expect((failure as RequestError).isNoResponders()).toBe(true);
    expect((failure as RequestError).cause).toBeInstanceOf(NoRespondersError);
    expect(isBrokerFailure(failure)).toBe(true);
  });

  it("requests - an unanswered request times out with the TimeoutError of nats.js, not long after its timeout", async () => {
    const started = performance.now();
    const failure = await nc.request("test.silent", encoder.encode("x"), { timeout: 200 }).catch((e) => e);
    const elapsed = performance.now() - started;
    expect(failure).toBeInstanceOf(TimeoutError);
    expect(isBrokerFailure(failure)).toBe(true);
    expect(elapsed).toBeGreaterThanOrEqual(195);
    expect(elapsed).toBeLessThan(1_000);
    // The next request after a timeout is answered as usual.
    expect(await outcome(nc.request("test.echo", encoder.encode("after"), { timeout: 2_000 }))).toBe(
      "echo after",
    );
  });

  it("jetstream - publishes, API calls and KV compare-and-set go through it unchanged", async () => {
    const jsm = await jetstreamManager(nc);
    await jsm.streams.add({ name: "MUXED", subjects: ["muxed.>"] });
    const ack = await jetstream(nc).publish("muxed.one", encoder.encode("1"), { msgID: "one" });
    expect(ack).toMatchObject({ stream: "MUXED", seq: 1, duplicate: false });
    const again = await jetstream(nc).publish("muxed.one", encoder.encode("1"), { msgID: "one" });
    expect(again.duplicate).toBe(true);
    const kv = await new Kvm(nc).create("muxed");
    const first = await casWrite(kv, "key", encoder.encode("a"), undefined);
    expect(first).toBe(1);
    // A create of a key that exists, an update against an old revision: someone else wrote first.
    expect(await casWrite(kv, "key", encoder.encode("b"), undefined)).toBeUndefined();
    expect(await casWrite(kv, "key", encoder.encode("c"), first)).toBe(2);
    expect(await casWrite(kv, "key", encoder.encode("d"), first)).toBeUndefined();
    expect(decoder.decode((await kv.get("key"))?.value)).toBe("c");
  });

  it("requests - a request on a closed connection, or in flight when it closes, fails as a broker failure", async () => {
    const other = await connectTo(ns.url);
    const muxed = withMuxedRequests(other, undefined);
    const pending = muxed.request("test.silent", encoder.encode("x"), { timeout: 10_000 }).catch((e) => e);
    await muxed.flush();
    await other.close();
    const failure = await pending;
    expect(failure).toBeInstanceOf(RequestError);
    expect(isBrokerFailure(failure)).toBe(true);
    await expect(muxed.request("test.echo", encoder.encode("x"), { timeout: 1_000 })).rejects.toThrow();
  });

  it("requests - a request the broker's permissions refuse fails at once with the refusal", async () => {
    await using users = await startNatsWithUsers();
    const submitter = await users.connectAs(NatsUser.SUBMITTER);
    try {
      const muxed = withMuxedRequests(submitter, inboxPrefixOf(NatsUser.SUBMITTER));
      const started = performance.now();
      const failure = await muxed
        .request("loom.v1.agents.mcp-worker.tasks", encoder.encode("{}"), { timeout: 5_000 })
        .catch((e) => e);
      expect(performance.now() - started).toBeLessThan(2_000);
      expect(failure).toBeInstanceOf(RequestError);
      expect((failure as RequestError).cause).toBeInstanceOf(PermissionViolationError);
      expect(
        await outcome(muxed.request("loom.v1.tools.stats", encoder.encode("{}"), { timeout: 5_000 })),
      ).toBe("RequestError < NoRespondersError");
    } finally {
      await submitter.close();
    }
  });
});

/**
 * The tool-task inbox: a second MuxedRequests on the same connection, on a subtree of the
 * connection's inbox of its own, where the mcp-worker's user may answer and nowhere else.
 */
describe("kit - muxed requests on an inbox subtree of their own (tool tasks)", () => {
  const PREFIX = toolTaskInboxOf("orchestrator");
  let ns: NatsServer;
  let nc: NatsConnection;
  let tasks: MuxedRequests;

  beforeAll(async () => {
    ns = await startNatsServer();
    nc = withMuxedRequests(await connectTo(ns.url), inboxPrefixOf("orchestrator"));
    tasks = new MuxedRequests(nc, PREFIX);
  });
  afterAll(async () => {
    tasks?.close();
    await nc?.close();
    await ns?.[Symbol.asyncDispose]();
  });

  it("tool-task inbox - concurrent requests each get their own answer on its subtree, the connection's own on the other inbox", async () => {
    const replies: string[] = [];
    // Answers later the earlier it was asked: a mix-up between requests would show.
    const responder = nc.subscribe("echo", {
      callback: (_error, msg) => {
        replies.push(msg.reply ?? "");
        const n = Number(msg.string());
        setTimeout(() => msg.respond(String(n)), 200 - n * 10);
      },
    });
    try {
      const answers = await Promise.all(
        Array.from({ length: 20 }, (_, n) =>
          outcome(tasks.request("echo", encoder.encode(String(n)), { timeout: 5_000 })),
        ),
      );
      expect(answers).toEqual(Array.from({ length: 20 }, (_, n) => String(n)));
      expect(replies.every((reply) => reply.startsWith(`${PREFIX}.`))).toBe(true);
      expect(await outcome(nc.request("echo", encoder.encode("0"), { timeout: 5_000 }))).toBe("0");
      const own = replies.at(-1) ?? "";
      expect(own.startsWith(`${inboxPrefixOf("orchestrator")}.`) && !own.startsWith(`${PREFIX}.`)).toBe(true);
    } finally {
      responder.unsubscribe();
    }
  });

  it("tool-task inbox - through request(): no responder is AGENT_UNAVAILABLE and silence is TIMEOUT", async () => {
    const failureOf = (subject: string, timeoutMs: number) =>
      request(nc, subject, WorkflowListContract, {}, { timeoutMs, inbox: tasks }).then(
        () => undefined,
        (error: { code?: string }) => error.code,
      );
    expect(await failureOf("nobody.serves.this", 2_000)).toBe(ErrorCode.AGENT_UNAVAILABLE);
    const silent = nc.subscribe("silent");
    try {
      const started = Date.now();
      expect(await failureOf("silent", 300)).toBe(ErrorCode.TIMEOUT);
      expect(Date.now() - started).toBeLessThan(2_000);
    } finally {
      silent.unsubscribe();
    }
  });

  it("tool-task inbox - closing fails a request still waiting at once, and any later one, the connection's own unaffected", async () => {
    const closing = new MuxedRequests(nc, PREFIX);
    const silent = nc.subscribe("silent.too");
    const responder = nc.subscribe("echo.after", {
      callback: (_error, msg) => {
        msg.respond("after");
      },
    });
    try {
      const waiting = outcome(closing.request("silent.too", encoder.encode("x"), { timeout: 30_000 }));
      await nc.flush();
      closing.close();
      expect(await waiting).toBe("RequestError");
      expect(await outcome(closing.request("echo.after", encoder.encode("x"), { timeout: 5_000 }))).toBe(
        "RequestError",
      );
      expect(await outcome(tasks.request("echo.after", encoder.encode("x"), { timeout: 5_000 }))).toBe(
        "after",
      );
      expect(await outcome(nc.request("echo.after", encoder.encode("x"), { timeout: 5_000 }))).toBe("after");
    } finally {
      silent.unsubscribe();
      responder.unsubscribe();
    }
  });
});
