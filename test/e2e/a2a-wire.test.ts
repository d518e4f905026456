import { randomUUID } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SendMessageRequest, Task, TaskState } from "@a2a-js/sdk";
import { ClientFactory } from "@a2a-js/sdk/client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { JsonSchemaValidator } from "../../services/kit/index.ts";
import { type Loom, startLoom, tokenFor } from "../helpers/loom.ts";
import { freePort } from "../helpers/ports.ts";
import { signJwt, validClaims } from "../helpers/tokens.ts";

const alice = tokenFor("alice", "analyst");
const expired = () =>
  signJwt(validClaims("old", ["analyst"], { exp: Math.floor(Date.now() / 1000) - 3_600 }));
const as = (token: string) => ({ serviceParameters: { Authorization: `Bearer ${token}` } });

const sendJson = (skill: string, data: Record<string, unknown>) => ({
  message: { messageId: randomUUID(), role: "ROLE_USER", parts: [{ data }], metadata: { skill } },
});

describe("a2a on the wire - what a third-party A2A client sees", () => {
  let loom: Loom;
  let base: string;
  let dir: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "loom-a2a-wire-"));
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    loom = await startLoom({ env: { LOOM_A2A_PORT: String(port), OTEL_TRACES_EXPORTER: "none" } });
  }, 90_000);
  afterAll(async () => {
    await loom?.[Symbol.asyncDispose]();
    await rm(dir, { recursive: true, force: true });
  });

  it("a2a - the Agent Card's security scheme is standard JSON, which the SDK client reads back", async () => {
    const response = await fetch(`${base}/.well-known/agent-card.json`);
    const text = await response.text();
    expect(text).not.toContain("$case");
    const json = JSON.parse(text) as { securitySchemes: Record<string, unknown> };
    expect(json.securitySchemes).toEqual({
      bearer: {
        httpAuthSecurityScheme: {
          scheme: "Bearer",
          bearerFormat: "JWT",
          description: "OAuth 2.0 access token",
        },
      },
    });
    const card = await (await new ClientFactory().createFromUrl(base)).getAgentCard();
    expect(card.securitySchemes.bearer?.scheme).toMatchObject({
      $case: "httpAuthSecurityScheme",
      value: { scheme: "Bearer", bearerFormat: "JWT" },
    });
  });

  it("a2a - every skill's examples are inputs its workflow accepts", async () => {
    const card = await (await new ClientFactory().createFromUrl(base)).getAgentCard();
    const validator = new JsonSchemaValidator();
    let checked = 0;
    for (const skill of card.skills) {
      const shown = await loom.cli(["workflow", "show", skill.id, "--json"]);
      const input = (JSON.parse(shown.stdout) as { input?: Record<string, unknown> }).input;
      expect(skill.examples.length, skill.id).toBeGreaterThan(0);
      for (const example of skill.examples) {
        const parsed = JSON.parse(example) as unknown;
        if (input !== undefined)
          expect(validator.check(input, parsed), `${skill.id}: ${example}`).toMatchObject({ valid: true });
        checked += 1;
      }
    }
    expect(checked).toBeGreaterThanOrEqual(4);
    expect(card.skills.find((skill) => skill.id === "crm-enrich")?.examples).toEqual(['{"contactId":"c-2"}']);
  });

  it("a2a - the card is revalidated on every use, so a workflow apply shows at once", async () => {
    const first = await fetch(`${base}/.well-known/agent-card.json`);
    expect(first.headers.get("cache-control")).toBe("no-cache");
    expect(await first.text()).not.toContain('"id":"fresh"');
    await writeFile(join(dir, "fresh.yaml"), "id: fresh\nsteps:\n  - { id: now, call: time.get_time }\n");
    const applied = await loom.cli(["workflow", "apply", join(dir, "fresh.yaml")], {
      token: tokenFor("ada", "admin"),
    });
    expect(applied.code, applied.stderr).toBe(0);
    const second = await fetch(`${base}/.well-known/agent-card.json`);
    expect(await second.text()).toContain('"id":"fresh"');
  });

  it("a2a - a missing token is an authentication error (401), not TaskNotFound, on both bindings", async () => {
    const rpc = await fetch(`${base}/a2a/jsonrpc`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "GetTask", params: { id: "x" } }),
    });
    expect(rpc.status).toBe(401);
    expect(rpc.headers.get("www-authenticate")).toBe('Bearer realm="loom"');
    const rpcBody = (await rpc.json()) as { error: { code: number; data: { reason: string } } };
    expect(rpcBody.error.code).not.toBe(-32001);
    expect(rpcBody.error).toMatchObject({ code: -32000, data: { reason: "UNAUTHENTICATED" } });

    const rest = await fetch(`${base}/a2a/rest/tasks/x`, { headers: { "A2A-Version": "1.0" } });
    expect(rest.status).toBe(401);
    expect(await rest.json()).toMatchObject({ error: { code: 401, status: "UNAUTHENTICATED" } });

    const client = await new ClientFactory().createFromUrl(base);
    const refused = await client.getTask({ tenant: "", id: "x" }).then(
      () => undefined,
      (error: unknown) => error as Error,
    );
    expect(refused?.name).not.toBe("TaskNotFoundError");
    expect(refused?.message).toContain("bearer token is required");
  });

  it("a2a - an expired token on send is 401 invalid_token, not HTTP 200 with a rejected task; a valid one runs", async () => {
    for (const binding of ["jsonrpc", "rest"] as const) {
      const response =
        binding === "jsonrpc"
          ? await fetch(`${base}/a2a/jsonrpc`, {
              method: "POST",
              headers: { "content-type": "application/json", Authorization: `Bearer ${expired()}` },
              body: JSON.stringify({
                jsonrpc: "2.0",
                id: 1,
                method: "SendMessage",
                params: sendJson("hello", { contactId: "c-1" }),
              }),
            })
          : await fetch(`${base}/a2a/rest/message:send`, {
              method: "POST",
              headers: {
                "content-type": "application/json",
                "A2A-Version": "1.0",
                Authorization: `Bearer ${expired()}`,
              },
              body: JSON.stringify(sendJson("hello", { contactId: "c-1" })),
            });
      expect(response.status, binding).toBe(401);
      expect(response.headers.get("www-authenticate"), binding).toContain('error="invalid_token"');
      expect(await response.text(), binding).toMatch(/expired|exp/);
    }
    const client = await new ClientFactory().createFromUrl(base);
    await expect(
      client.sendMessage(SendMessageRequest.fromJSON(sendJson("hello", { contactId: "c-1" })), as(expired())),
    ).rejects.toThrow();
    const result = await client.sendMessage(
      SendMessageRequest.fromJSON(sendJson("hello", { contactId: "c-1" })),
      as(alice),
    );
    expect("status" in result && result.status?.state).toBe(TaskState.TASK_STATE_COMPLETED);
  });

  it("a2a - without `A2A-Version: 1.0` a request is 0.3 to the SDK and refused; with it the same request runs", async () => {
    const send = (binding: "jsonrpc" | "rest", version: Record<string, string>) =>
      binding === "jsonrpc"
        ? fetch(`${base}/a2a/jsonrpc`, {
            method: "POST",
            headers: { "content-type": "application/json", Authorization: `Bearer ${alice}`, ...version },
            body: JSON.stringify({
              jsonrpc: "2.0",
              id: 1,
              method: "SendMessage",
              params: sendJson("hello", { contactId: "c-1" }),
            }),
          })
        : fetch(`${base}/a2a/rest/message:send`, {
            method: "POST",
            headers: { "content-type": "application/json", Authorization: `Bearer ${alice}`, ...version },
            body: JSON.stringify(sendJson("hello", { contactId: "c-1" })),
          });
    const message = "The requested A2A protocol version '0.3' is not supported. Supported versions: 1.0";
    const info = { reason: "VERSION_NOT_SUPPORTED", domain: "a2a-protocol.org" };
    const rpc = await send("jsonrpc", {});
    expect(rpc.status).toBe(200);
    expect(await rpc.json()).toMatchObject({ error: { code: -32009, message, data: [info] } });
    const rest = await send("rest", {});
    expect(rest.status).toBe(400);
    expect(await rest.json()).toMatchObject({
      error: { code: 400, status: "FAILED_PRECONDITION", message, details: [info] },
    });
    // Controls: the same requests with the header run the workflow.
    const accepted = (await (await send("jsonrpc", { "A2A-Version": "1.0" })).json()) as {
      result?: { task?: { status?: { state?: string } } };
    };
    expect(accepted.result?.task?.status?.state).toBe("TASK_STATE_COMPLETED");
    const acceptedRest = (await (await send("rest", { "A2A-Version": "1.0" })).json()) as {
      task?: { status?: { state?: string } };
    };
    expect(acceptedRest.task?.status?.state).toBe("TASK_STATE_COMPLETED");
  });

  it("a2a - a task's history holds the message that started it", async () => {
    const client = await new ClientFactory().createFromUrl(base);
    const result = await client.sendMessage(
      SendMessageRequest.fromJSON(sendJson("hello", { contactId: "c-2" })),
      as(alice),
    );
    const task = "status" in result ? result : undefined;
    expect(task).toBeDefined();
    const fetched = Task.toJSON(await client.getTask({ tenant: "", id: task?.id ?? "" }, as(alice))) as {
      history?: Array<{ role: string; parts: Array<{ data?: unknown }> }>;
    };
    expect(fetched.history?.length).toBeGreaterThanOrEqual(1);
    expect(fetched.history?.[0]).toMatchObject({
      role: "ROLE_USER",
      parts: [{ data: { contactId: "c-2" } }],
    });
  });
});
