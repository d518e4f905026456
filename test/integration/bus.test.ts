import type { NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from "vitest";
import { z } from "zod";
import { AgentTaskContract, PolicyDecideContract } from "../../schemas/contracts.ts";
import { ErrorCode, WireErrorSchema } from "../../schemas/errors.ts";
import type { PolicyDecision, PolicyDecisionRequest } from "../../schemas/policy.ts";
import { agentTasksSubject, Headers, QueueGroups, Subjects } from "../../schemas/subjects.ts";
import {
  createLogger,
  LoomError,
  listen,
  MAX_ERROR_BYTES,
  type RequestContext,
  request,
  type ServeOptions,
  serve,
  setupTelemetry,
  TelemetryConfigSchema,
  TracesExporter,
  withSpan,
} from "../../services/kit/index.ts";
import { connectTo, type NatsServer, startNatsServer } from "../helpers/nats-server.ts";
import { tokenFor } from "../helpers/tokens.ts";

const SUBJECT = Subjects.POLICY_DECIDE;
const TIMEOUT_MS = 2_000;
const log = createLogger({ service: "bus-test", level: "silent" });
const token = tokenFor("ann", "analyst");

const askForContact: PolicyDecisionRequest = {
  action: "tools.call",
  resource: { tool: "crm.get_contact" },
  runId: "run-1",
  stepId: "contact",
};

type Handler = ServeOptions<
  typeof PolicyDecideContract.request,
  typeof PolicyDecideContract.response
>["handle"];

/** A decision that echoes the request, so a test can tell its reply came from this handler. */
async function allowEverything(
  body: PolicyDecisionRequest,
  context: RequestContext,
): Promise<PolicyDecision> {
  return {
    decisionId: `d-${body.stepId ?? "none"}`,
    effect: "allow",
    rule: "test-allows",
    reason: `allowed ${body.resource.tool ?? body.resource.workflow}`,
    // The handler only proves the header arrived; verifying it is acp-policy's job.
    principal: {
      id: context.authorization === `Bearer ${token}` ? "ann" : "anonymous",
      roles: ["analyst"],
      attributes: {},
    },
    policyVersion: "test",
  };
}

/** Error replies are plain NATS messages; this reads one the way any client would. */
function readErrorReply(reply: { headers?: { get(key: string): string } | undefined; data: Uint8Array }) {
  return {
    header: reply.headers?.get(Headers.ERROR),
    body: WireErrorSchema.parse(JSON.parse(new TextDecoder().decode(reply.data))),
  };
}

/** Rejection of `promise` as a LoomError, failing the test if it resolves or throws anything else. */
async function loomError(promise: Promise<unknown>): Promise<LoomError> {
  const error = await promise.then(
    () => undefined,
    (caught: unknown) => caught,
  );
  expect(error).toBeInstanceOf(LoomError);
  return error as LoomError;
}

describe("typed bus over a real nats-server", () => {
  let ns: NatsServer;
  let nc: NatsConnection;
  let telemetry: { shutdown(): Promise<void> };

  beforeAll(async () => {
    telemetry = setupTelemetry({
      service: "bus-test",
      config: TelemetryConfigSchema.parse({
        OTEL_TRACES_EXPORTER: TracesExporter.NONE,
        LOOM_TRACE_STREAM: "false",
      }),
    });
    ns = await startNatsServer();
    nc = await connectTo(ns.url);
  });

  afterAll(async () => {
    await nc?.close();
    await ns?.[Symbol.asyncDispose]();
    await telemetry?.shutdown();
  });

  /** Serves the policy contract on its own connection (returned) until the test ends. */
  async function servePolicy(handle: Handler): Promise<NatsConnection> {
    const serverConnection = await connectTo(ns.url);
    const service = serve(serverConnection, {
      subject: SUBJECT,
      queue: QueueGroups.POLICY,
      contract: PolicyDecideContract,
      log,
      handle,
    });
    // The subscription must reach the server before the first request, or it finds no responder.
    await serverConnection.flush();
    onTestFinished(async () => {
      await service.stop();
      await serverConnection.close();
    });
    return serverConnection;
  }

  const ask = (body: PolicyDecisionRequest, timeoutMs = TIMEOUT_MS) =>
    request(nc, SUBJECT, PolicyDecideContract, body, {
      timeoutMs,
      headers: { [Headers.AUTHORIZATION]: `Bearer ${token}` },
    });

  it("bus - a good request gets its typed reply, with the caller's Authorization passed to the handler", async () => {
    const seen: RequestContext[] = [];
    await servePolicy(async (body, context) => {
      seen.push(context);
      return allowEverything(body, context);
    });
    const decision = await ask(askForContact);
    expect(decision).toEqual({
      decisionId: "d-contact",
      effect: "allow",
      rule: "test-allows",
      reason: "allowed crm.get_contact",
      principal: { id: "ann", roles: ["analyst"], attributes: {} },
      policyVersion: "test",
    });
    expect(seen).toHaveLength(1);
    expect(seen[0]?.authorization).toBe(`Bearer ${token}`);
  });

  it("bus - a request that is not JSON gets an INVALID_MESSAGE error reply and the service keeps serving", async () => {
    let calls = 0;
    await servePolicy(async (body, context) => {
      calls += 1;
      return allowEverything(body, context);
    });
    const reply = await nc.request(SUBJECT, "{not json", { timeout: TIMEOUT_MS });
    const { header, body } = readErrorReply(reply);
    expect(header).toBe(ErrorCode.INVALID_MESSAGE);
    expect(body.code).toBe(ErrorCode.INVALID_MESSAGE);
    expect(body.message).toContain("not valid JSON");
    expect(calls).toBe(0);

    expect((await ask(askForContact)).rule).toBe("test-allows");
    expect(calls).toBe(1);
  });

  it("bus - a request failing the schema gets an INVALID_MESSAGE reply naming the field and the service keeps serving", async () => {
    let calls = 0;
    await servePolicy(async (body, context) => {
      calls += 1;
      return allowEverything(body, context);
    });
    const wrong = JSON.stringify({ action: "tools.delete", resource: { tool: "crm.get_contact" } });
    const reply = await nc.request(SUBJECT, wrong, { timeout: TIMEOUT_MS });
    const { header, body } = readErrorReply(reply);
    expect(header).toBe(ErrorCode.INVALID_MESSAGE);
    expect(body.code).toBe(ErrorCode.INVALID_MESSAGE);
    expect(body.message).toContain("action");
    expect(calls).toBe(0);

    // A message nobody can answer (no reply subject) is dropped without harming the service either.
    nc.publish(SUBJECT, "garbage without a reply subject");
    expect((await ask(askForContact)).decisionId).toBe("d-contact");
    expect(calls).toBe(1);
  });

  it("bus - a handler's LoomError reaches the caller as a LoomError with the same code and details", async () => {
    await servePolicy(async () => {
      throw new LoomError(ErrorCode.POLICY_DENIED, "contractors never touch CRM data", {
        details: { rule: "contractors-no-crm" },
      });
    });
    const error = await loomError(ask(askForContact));
    expect(error.code).toBe(ErrorCode.POLICY_DENIED);
    expect(error.message).toBe("contractors never touch CRM data");
    expect(error.details).toEqual({ rule: "contractors-no-crm" });
  });

  it("bus - an unexpected handler failure is INTERNAL and does not leak its message", async () => {
    await servePolicy(async () => {
      throw new Error("database password is hunter2");
    });
    const error = await loomError(ask(askForContact));
    expect(error.code).toBe(ErrorCode.INTERNAL);
    expect(error.message).not.toContain("hunter2");
  });

  it("bus - a handler reply that breaks the contract is refused by the service as INTERNAL", async () => {
    await servePolicy(async () => ({ effect: "allow" }) as unknown as PolicyDecision);
    const error = await loomError(ask(askForContact));
    expect(error.code).toBe(ErrorCode.INTERNAL);
  });

  it("bus - a caller's malformed request is refused before it is sent", async () => {
    let calls = 0;
    await servePolicy(async (body, context) => {
      calls += 1;
      return allowEverything(body, context);
    });
    const bad = { action: "tools.call", resource: { tool: 42 } } as unknown as PolicyDecisionRequest;
    const error = await loomError(ask(bad));
    expect(error.code).toBe(ErrorCode.INTERNAL);
    expect(error.message).toContain("malformed");
    expect(calls).toBe(0);
  });

  it("bus - a request with nobody serving the subject rejects with AGENT_UNAVAILABLE", async () => {
    const started = Date.now();
    const error = await loomError(
      request(
        nc,
        agentTasksSubject("nobody-home"),
        AgentTaskContract,
        { messageId: "m-1", role: "ROLE_USER", parts: [{ text: "hello?" }] },
        { timeoutMs: 10_000 },
      ),
    );
    expect(error.code).toBe(ErrorCode.AGENT_UNAVAILABLE);
    expect(error.message).toContain("nobody-home");
    // No responders is known at once; it must not wait for the timeout.
    expect(Date.now() - started).toBeLessThan(5_000);
  });

  it("bus - a reply that does not come in time rejects with TIMEOUT", async () => {
    await servePolicy(async (body, context) => {
      await new Promise((resolve) => setTimeout(resolve, 500));
      return allowEverything(body, context);
    });
    const error = await loomError(ask(askForContact, 100));
    expect(error.code).toBe(ErrorCode.TIMEOUT);
  });

  it("bus - replicas in one queue group share requests, each answered once", async () => {
    const counts = [0, 0];
    for (const index of [0, 1]) {
      await servePolicy(async (body, context) => {
        counts[index] = (counts[index] ?? 0) + 1;
        return allowEverything(body, context);
      });
    }
    const replies = await Promise.all(
      Array.from({ length: 40 }, (_, step) => ask({ ...askForContact, stepId: `s${step}` })),
    );
    expect(replies.map((reply) => reply.decisionId)).toEqual(
      Array.from({ length: 40 }, (_, step) => `d-s${step}`),
    );
    expect((counts[0] ?? 0) + (counts[1] ?? 0)).toBe(40);
    expect(counts[0]).toBeGreaterThan(0);
    expect(counts[1]).toBeGreaterThan(0);
  });

  it("bus - stopping a service answers the request in flight before it returns", async () => {
    const serverConnection = await connectTo(ns.url);
    onTestFinished(() => serverConnection.close());
    let began: () => void = () => undefined;
    const handlerBegan = new Promise<void>((resolve) => {
      began = resolve;
    });
    const service = serve(serverConnection, {
      subject: SUBJECT,
      queue: QueueGroups.POLICY,
      contract: PolicyDecideContract,
      log,
      handle: async (body, context) => {
        began();
        await new Promise((resolve) => setTimeout(resolve, 300));
        return allowEverything(body, context);
      },
    });
    await serverConnection.flush();
    const reply = ask(askForContact);
    await handlerBegan;
    await service.stop();
    expect((await reply).decisionId).toBe("d-contact");
    expect((await loomError(ask(askForContact))).code).toBe(ErrorCode.AGENT_UNAVAILABLE);
  });

  it("bus - the requester's trace context arrives in the handler's headers and span", async () => {
    const inHandler: { traceparent?: string | undefined; traceId?: string | undefined } = {};
    await servePolicy(async (body, context) => {
      inHandler.traceparent = context.headers?.get("traceparent");
      await withSpan("inside handler", {}, async (span) => {
        inHandler.traceId = span.spanContext().traceId;
      });
      return allowEverything(body, context);
    });
    const callerTraceId = await withSpan("caller", {}, async (span) => {
      await ask(askForContact);
      return span.spanContext().traceId;
    });
    expect(callerTraceId).toMatch(/^[0-9a-f]{32}$/);
    expect(callerTraceId).not.toBe("0".repeat(32));
    expect(inHandler.traceparent).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]$/);
    expect(inHandler.traceparent?.split("-")[1]).toBe(callerTraceId);
    expect(inHandler.traceId).toBe(callerTraceId);
  });

  it("bus - requests from separate spans carry separate traces", async () => {
    const traceparents: string[] = [];
    await servePolicy(async (body, context) => {
      traceparents.push(context.headers?.get("traceparent") ?? "");
      return allowEverything(body, context);
    });
    await withSpan("first", {}, () => ask(askForContact));
    await withSpan("second", {}, () => ask(askForContact));
    const traceIds = traceparents.map((header) => header.split("-")[1]);
    expect(traceIds).toHaveLength(2);
    expect(traceIds[0]).not.toBe(traceIds[1]);
  });

  it("bus - a reply over max_payload becomes a PAYLOAD_TOO_LARGE error reply and the service keeps serving", async () => {
    const maxPayload = nc.info?.max_payload ?? 1_048_576;
    let huge = true;
    await servePolicy(async (body, context) => {
      const decision = await allowEverything(body, context);
      return huge ? { ...decision, reason: "x".repeat(maxPayload + 10) } : decision;
    });
    const error = await loomError(ask(askForContact));
    expect(error.code).toBe(ErrorCode.PAYLOAD_TOO_LARGE);
    expect(error.details).toMatchObject({ limit: "max_payload", max: maxPayload });

    huge = false;
    expect((await ask(askForContact)).rule).toBe("test-allows");
  });

  it("bus - an error too long for a reply is cut to fit, its code kept", async () => {
    await servePolicy(async () => {
      throw new LoomError(ErrorCode.INVALID_INPUT, `bad: ${"y".repeat(2_000_000)}`, {
        details: { echo: "z".repeat(100_000) },
      });
    });
    const reply = await nc.request(SUBJECT, JSON.stringify(askForContact), { timeout: TIMEOUT_MS });
    const { header, body } = readErrorReply(reply);
    expect(header).toBe(ErrorCode.INVALID_INPUT);
    expect(body.code).toBe(ErrorCode.INVALID_INPUT);
    expect(reply.data.byteLength).toBeLessThanOrEqual(MAX_ERROR_BYTES);
    expect(body.message).toMatch(/^bad: y+… \(cut from \d+ bytes\)$/);
  });

  it("bus - listen drops malformed messages (a waiting sender gets a typed error), survives a failing handler, and keeps listening", async () => {
    const listener = await connectTo(ns.url);
    onTestFinished(() => listener.close());
    const seen: string[] = [];
    listen(listener, {
      subject: "loom.v1.test.listen",
      schema: z.object({ taskId: z.string().min(1) }),
      what: "test message",
      log,
      handle: async ({ taskId }) => {
        if (taskId === "explode") throw new Error("handler bug");
        seen.push(taskId);
      },
    });
    await listener.flush();
    for (const bad of ["not json", "", "[]", '{"taskId":""}', '{"taskId":7}', "{".repeat(10_000)]) {
      nc.publish("loom.v1.test.listen", bad);
    }
    const reply = await nc.request("loom.v1.test.listen", "not json", { timeout: TIMEOUT_MS });
    expect(readErrorReply(reply).body.code).toBe(ErrorCode.INVALID_MESSAGE);
    nc.publish("loom.v1.test.listen", JSON.stringify({ taskId: "explode" }));
    nc.publish("loom.v1.test.listen", JSON.stringify({ taskId: "good" }));
    await nc.flush();
    await expect.poll(() => seen, { timeout: TIMEOUT_MS }).toEqual(["good"]);
  });
  it("bus - work after a reply runs once the answer has left, after an error reply too, and a failing one is only logged", async () => {
    const tap = await connectTo(ns.url);
    onTestFinished(() => tap.close());
    const order: string[] = [];
    const tapped = tap.subscribe(">", {
      callback: (_error, message) => {
        if (message.subject.startsWith("_INBOX.")) order.push("reply");
        else if (message.subject.startsWith("loom.v1.test.after")) order.push(message.subject);
      },
    });
    onTestFinished(() => tapped.unsubscribe());
    await tap.flush();
    const served = await servePolicy(async (body, context) => {
      context.afterReply(() => served.publish(`loom.v1.test.after.${body.stepId}`));
      context.afterReply(() => {
        throw new Error("a record that could not be made");
      });
      if (body.stepId === "refused") throw new LoomError(ErrorCode.POLICY_DENIED, "no");
      return allowEverything(body, context);
    });
    expect((await ask(askForContact)).rule).toBe("test-allows");
    expect((await loomError(ask({ ...askForContact, stepId: "refused" }))).code).toBe(
      ErrorCode.POLICY_DENIED,
    );
    await expect
      .poll(() => order, { timeout: TIMEOUT_MS })
      .toEqual(["reply", "loom.v1.test.after.contact", "reply", "loom.v1.test.after.refused"]);
    expect((await ask(askForContact)).rule).toBe("test-allows");
  });
});
