import { randomUUID } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { Message, SendMessageRequest, Task, TaskState } from "@a2a-js/sdk";
import { ClientFactory } from "@a2a-js/sdk/client";
import type { NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MemoryContract } from "../../schemas/contracts.ts";
import { Headers, Subjects } from "../../schemas/subjects.ts";
import { LoomError, request } from "../../services/kit/index.ts";
import { AttackClass, attack, control } from "../helpers/attack-tally.ts";
import { type Loom, startLoom, tokenFor } from "../helpers/loom.ts";
import { serviceLogs } from "../helpers/nats-users.ts";
import { freePort } from "../helpers/ports.ts";

const alice = tokenFor("alice", "analyst");
const bob = tokenFor("bob", "analyst");
const root = tokenFor("root", "admin");
const manager = tokenFor("mia", "manager");

const ALICE_NOTE = "ALICE-PRIVATE-NOTE";
const BOB_NOTE = "INJECTED-BY-BOB";
const stamp = Date.now();

interface Summary {
  runId: string;
  state: string;
  output?: { earlierRuns?: number };
  error?: { code: string; message: string };
}

/** An A2A SendMessage for `skill` with a data part, in a context the sender names. */
function sendInContext(skill: string, contextId: string, data: Record<string, unknown>) {
  return SendMessageRequest.fromJSON({
    message: Message.toJSON(
      Message.fromJSON({
        messageId: randomUUID(),
        role: "ROLE_USER",
        contextId,
        parts: [{ data }],
        metadata: { skill },
      }),
    ),
  });
}

describe("security - context memory: a context is its owner's, at every edge that touches it", () => {
  let loom: Loom;
  let baseUrl: string;
  let submitter: NatsConnection;

  beforeAll(async () => {
    const port = await freePort();
    baseUrl = `http://127.0.0.1:${port}`;
    loom = await startLoom({ env: { LOOM_A2A_PORT: String(port) }, readyTimeoutMs: 90_000 });
    submitter = await loom.connectAs("submitter");
  }, 180_000);
  afterAll(async () => {
    await loom?.[Symbol.asyncDispose]();
  });

  /** `loom submit <workflow> --context <ctx> --watch --json` as `token`, with `input`. */
  async function submit(token: string, workflow: string, contextId: string, input: Record<string, unknown>) {
    const result = await loom.cli(
      ["submit", workflow, "--context", contextId, "--input", JSON.stringify(input), "--watch", "--json"],
      { token, timeoutMs: 60_000 },
    );
    return { ...result, summary: JSON.parse(result.stdout) as Summary };
  }

  /** The context's memory as `token` reads it with `loom memory get --json`. */
  async function memoryOf(contextId: string, token: string): Promise<string> {
    const shown = await loom.cli(["memory", "get", contextId, "--json"], { token });
    expect(shown.code, shown.stderr).toBe(0);
    return shown.stdout;
  }

  /** A memory request on the bus, as an application connected as the submitter user makes it. */
  function onBus(subject: string, contextId: string, token: string) {
    return request(
      submitter,
      subject,
      MemoryContract,
      { contextId },
      {
        timeoutMs: 10_000,
        headers: { [Headers.AUTHORIZATION]: `Bearer ${token}` },
      },
    ).then(
      (reply) => ({ reply, code: "OK" }),
      (error: unknown) => ({
        reply: undefined,
        code: error instanceof LoomError ? error.code : String(error),
      }),
    );
  }

  it("context memory - a run in another principal's context is refused before it reads or writes anything", {
    timeout: 400_000,
  }, async () => {
    const ctx = `ctx-alice-${stamp}`;
    const first = await submit(alice, "remember", ctx, { contactId: "c-1", note: ALICE_NOTE });
    expect(first.summary.state, first.stderr).toBe("completed");

    for (const workflow of ["remember", "hello"]) {
      await attack(
        AttackClass.TENANT_ISOLATION,
        `cli submit ${workflow} --context <alice's> as bob appends to alice's memory`,
        async () => {
          const bobs = await submit(bob, workflow, ctx, { contactId: "c-2", note: BOB_NOTE });
          const memory = await memoryOf(ctx, alice);
          return (
            bobs.code === 2 &&
            bobs.summary.state === "rejected" &&
            bobs.summary.error?.code === "POLICY_DENIED" &&
            !bobs.stdout.includes(ALICE_NOTE) &&
            !bobs.stdout.includes(first.summary.runId) &&
            !memory.includes(BOB_NOTE) &&
            !memory.includes(bobs.summary.runId)
          );
        },
      );
    }
    await attack(
      AttackClass.TENANT_ISOLATION,
      "a2a message/send with alice's contextId as bob appends to alice's memory",
      async () => {
        const client = await new ClientFactory().createFromUrl(baseUrl);
        const result = await client.sendMessage(
          sendInContext("remember", ctx, { contactId: "c-3", note: BOB_NOTE }),
          { serviceParameters: { Authorization: `Bearer ${bob}` } },
        );
        const task = "status" in result ? result : undefined;
        const said = JSON.stringify(task === undefined ? result : Task.toJSON(task));
        const memory = await memoryOf(ctx, alice);
        return (
          task?.status?.state === TaskState.TASK_STATE_REJECTED &&
          said.includes("POLICY_DENIED") &&
          !said.includes(ALICE_NOTE) &&
          !memory.includes(BOB_NOTE)
        );
      },
    );

    await control("alice's next run in her context sees only her own earlier run", async () => {
      const again = await submit(alice, "remember", ctx, { contactId: "c-1" });
      return again.summary.state === "completed" && again.summary.output?.earlierRuns === 1;
    });
    await control("an admin runs in alice's context and reads it, per the shipped policy", async () => {
      const admins = await submit(root, "remember", ctx, { contactId: "c-2" });
      const memory = await memoryOf(ctx, root);
      return (
        admins.summary.state === "completed" &&
        admins.summary.output?.earlierRuns === 2 &&
        memory.includes(ALICE_NOTE)
      );
    });
  });

  it("context memory - a context squatted first is the squatter's: the victim's input never reaches it", {
    timeout: 300_000,
  }, async () => {
    const ctx = `ctx-squat-${stamp}`;
    const squat = await submit(bob, "hello", ctx, { contactId: "c-2", note: BOB_NOTE });
    expect(squat.summary.state, squat.stderr).toBe("completed");
    await attack(
      AttackClass.TENANT_ISOLATION,
      "bob squats a context id; alice's run in it leaves her input in bob's memory",
      async () => {
        const victims = await submit(alice, "hello", ctx, { contactId: "c-1", note: ALICE_NOTE });
        const memory = await memoryOf(ctx, bob);
        return (
          victims.code === 2 &&
          victims.summary.error?.code === "POLICY_DENIED" &&
          // The refusal tells alice nothing of bob's context: not his input, not his run.
          !victims.stdout.includes(BOB_NOTE) &&
          !victims.stdout.includes(squat.summary.runId) &&
          !victims.stdout.includes("bob") &&
          !memory.includes(ALICE_NOTE) &&
          !memory.includes(victims.summary.runId)
        );
      },
    );
    await attack(
      AttackClass.TENANT_ISOLATION,
      "two principals race into a fresh context: both get in",
      async () => {
        const race = `ctx-race-${stamp}`;
        const both = await Promise.all([
          submit(alice, "hello", race, { contactId: "c-1" }),
          submit(bob, "hello", race, { contactId: "c-2" }),
        ]);
        const states = both.map((one) => one.summary.state).sort();
        return states[0] === "completed" && states[1] === "rejected";
      },
    );
    await control("bob, the context's owner, runs in it again and reads it", async () => {
      const again = await submit(bob, "hello", ctx, { contactId: "c-2" });
      const memory = await memoryOf(ctx, bob);
      return again.summary.state === "completed" && memory.includes(again.summary.runId);
    });
  });

  it("context memory - a context cleared and claimed by another while the owner's run waits does not take that run", {
    timeout: 300_000,
  }, async () => {
    const ctx = `ctx-late-${stamp}`;
    const dir = await mkdtemp(join(tmpdir(), "loom-ctx-"));
    try {
      const workflow = join(dir, "wait-then-greet.yaml");
      await writeFile(
        workflow,
        `id: wait-then-greet
steps:
  - id: approve
    approval: { prompt: "Go on?", roles: [manager] }
  - id: contact
    call: crm.get_contact
    with: { id: "{% $input.contactId %}" }
`,
      );
      const started = await loom.cli(
        [
          "submit",
          workflow,
          "--context",
          ctx,
          "--input",
          JSON.stringify({ contactId: "c-1", note: ALICE_NOTE }),
          "--json",
        ],
        { token: alice },
      );
      expect(started.code, started.stderr).toBe(0);
      const { runId } = JSON.parse(started.stdout) as { runId: string };
      const stateOf = async () => {
        const got = await loom.cli(["runs", "get", runId, "--json"], { token: alice });
        return got.code === 0 ? (JSON.parse(got.stdout) as { state: string }).state : got.stderr;
      };
      const until = async (state: string) => {
        for (let tries = 0; tries < 150 && (await stateOf()) !== state; tries += 1) await sleep(200);
        return stateOf();
      };
      expect(await until("input-required")).toBe("input-required");
      expect((await loom.cli(["memory", "clear", ctx], { token: alice })).code).toBe(0);
      const squat = await submit(bob, "hello", ctx, { contactId: "c-2" });
      expect(squat.summary.state, squat.stderr).toBe("completed");
      const answered = await loom.cli(["runs", "input", runId, "--step", "approve", "--approve"], {
        token: manager,
      });
      expect(answered.code, answered.stderr).toBe(0);

      await attack(
        AttackClass.TENANT_ISOLATION,
        "the owner clears her context, bob claims it, and her waiting run then appends to bob's memory",
        async () => {
          // Her run reads no memory (its expressions never name $memory, so bob's entries never
          // reach it) and ends; at its end the context is bob's, and appending to it is decided as
          // memory.write for her run, which policy refuses: nothing of hers is in bob's memory.
          let ended = await stateOf();
          for (let tries = 0; tries < 150 && !["completed", "rejected"].includes(ended); tries += 1) {
            await sleep(200);
            ended = await stateOf();
          }
          // The orchestrator logs "run finished" once the run's memory append is done or refused.
          const finished = (logs: string) =>
            logs.split("\n").some((line) => line.includes(runId) && line.includes('"run finished"'));
          for (let tries = 0; tries < 100 && !finished(await serviceLogs(loom.logDir)); tries += 1) {
            await sleep(100);
          }
          const memory = await memoryOf(ctx, bob);
          return (
            ["completed", "rejected"].includes(ended) &&
            !memory.includes(runId) &&
            !memory.includes(ALICE_NOTE)
          );
        },
      );
      await control("bob's own run is in the context he claimed", async () =>
        (await memoryOf(ctx, bob)).includes(squat.summary.runId),
      );
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("context memory - memory get and clear of another's context, on the bus and the CLI, answer as for no context", {
    timeout: 300_000,
  }, async () => {
    const ctx = `ctx-owned-${stamp}`;
    const unknown = `ctx-none-${stamp}`;
    const owners = await submit(alice, "hello", ctx, { contactId: "c-1", note: ALICE_NOTE });
    expect(owners.summary.state, owners.stderr).toBe("completed");

    for (const [verb, subject] of [
      ["get", Subjects.MEMORY_GET],
      ["clear", Subjects.MEMORY_CLEAR],
    ] as const) {
      await attack(AttackClass.TENANT_ISOLATION, `bus memory ${verb} of alice's context as bob`, async () => {
        const theirs = await onBus(subject, ctx, bob);
        const none = await onBus(subject, unknown, bob);
        return (
          theirs.code === none.code &&
          JSON.stringify(theirs.reply?.entries ?? []) === "[]" &&
          !JSON.stringify(theirs).includes(ALICE_NOTE)
        );
      });
      await attack(AttackClass.TENANT_ISOLATION, `cli memory ${verb} of alice's context as bob`, async () => {
        const theirs = await loom.cli(["memory", verb, ctx], { token: bob });
        const none = await loom.cli(["memory", verb, unknown], { token: bob });
        return (
          theirs.code === none.code &&
          theirs.stdout.replaceAll(ctx, "<ctx>") === none.stdout.replaceAll(unknown, "<ctx>") &&
          theirs.stderr.replaceAll(ctx, "<ctx>") === none.stderr.replaceAll(unknown, "<ctx>") &&
          !theirs.stdout.includes(ALICE_NOTE)
        );
      });
    }
    await attack(
      AttackClass.TENANT_ISOLATION,
      "cli memory clear of another's context claims it was forgotten",
      async () => {
        const cleared = await loom.cli(["memory", "clear", ctx], { token: bob });
        const memory = await memoryOf(ctx, alice);
        return (
          cleared.code !== 0 &&
          !cleared.stdout.includes("forgotten") &&
          cleared.stderr.includes("CONTEXT_NOT_FOUND") &&
          memory.includes(owners.summary.runId)
        );
      },
    );

    await control("alice reads her context's memory on the bus", async () => {
      const mine = await onBus(Subjects.MEMORY_GET, ctx, alice);
      return mine.code === "OK" && JSON.stringify(mine.reply).includes(owners.summary.runId);
    });
    await control("an admin clears alice's context, and it is forgotten", async () => {
      const cleared = await loom.cli(["memory", "clear", ctx], { token: root });
      const memory = await memoryOf(ctx, alice);
      return (
        cleared.code === 0 && cleared.stdout.includes("forgotten") && !memory.includes(owners.summary.runId)
      );
    });
  });

  it("context memory - an authenticated body over the limit gets the route's JSON error, no stack, on every route", {
    timeout: 120_000,
  }, async () => {
    const big = (bytes: number) =>
      JSON.stringify({ jsonrpc: "2.0", id: 1, method: "x", params: { pad: "a".repeat(bytes) } });
    const routes: Array<[string, string, number, string]> = [
      ["A2A JSON-RPC", "/a2a/jsonrpc", 200_000, "application/json"],
      ["A2A HTTP+JSON", "/a2a/rest/v1/message:send", 200_000, "application/json"],
      ["MCP gateway", "/mcp", 5_000_000, "application/json"],
      ["console API", "/console/api/runs", 300_000, "application/json"],
    ];
    for (const [name, path, bytes, type] of routes) {
      await attack(
        AttackClass.DENIAL_OF_SERVICE,
        `${name}: a ${Math.round(bytes / 1000)} KB body shows express's error page`,
        async () => {
          const response = await fetch(`${baseUrl}${path}`, {
            method: "POST",
            headers: {
              authorization: `Bearer ${alice}`,
              "content-type": type,
              accept: "application/json, text/event-stream",
            },
            body: big(bytes),
          });
          const text = await response.text();
          return (
            response.status === 413 &&
            (response.headers.get("content-type") ?? "").includes("json") &&
            text.includes("PAYLOAD_TOO_LARGE") &&
            !text.includes("node_modules") &&
            !text.includes("<") &&
            !/\bat \S+ \(/.test(text)
          );
        },
      );
    }
    await control("a small JSON-RPC request on the A2A edge is answered in JSON-RPC", async () => {
      const response = await fetch(`${baseUrl}/a2a/jsonrpc`, {
        method: "POST",
        headers: { authorization: `Bearer ${alice}`, "content-type": "application/json" },
        body: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "GetTask", params: { id: "no-such-task" } }),
      });
      const body = (await response.json()) as { jsonrpc?: string; error?: unknown };
      return body.jsonrpc === "2.0" && body.error !== undefined;
    });
    await control("a small run submission on the console API is accepted", async () => {
      const response = await fetch(`${baseUrl}/console/api/runs`, {
        method: "POST",
        headers: { authorization: `Bearer ${alice}`, "content-type": "application/json" },
        body: JSON.stringify({ workflow: "hello", input: { contactId: "c-1" } }),
      });
      return response.ok;
    });
  });
});
