import { execFile } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { type Client, ClientFactory } from "@a2a-js/sdk/client";
import { jetstream } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Streams } from "../../schemas/subjects.ts";
import { type Stack, waitUntilReady } from "../../services/cli/stack.ts";
import { AttackClass, attack, control } from "../helpers/attack-tally.ts";
import { REPO_ROOT } from "../helpers/loom.ts";
import { type NatsUsersServer, startNatsWithUsers } from "../helpers/nats-users.ts";
import { freePort } from "../helpers/ports.ts";
import { signJwt, tokenFor, validClaims } from "../helpers/tokens.ts";

const run = promisify(execFile);
const CLI = join(REPO_ROOT, "services/cli/bin.ts");

const owner = tokenFor("ann", "analyst");
const stranger = tokenFor("sam", "analyst");
const admin = tokenFor("root", "admin");
const viewer = tokenFor("vic", "viewer");
const now = () => Math.floor(Date.now() / 1000);

/** The callers an outsider tries with: none may read another's run. */
const intruders: Array<[string, () => string | undefined]> = [
  ["a garbage token", () => "x"],
  ["no token", () => undefined],
  [
    "an expired token",
    () => signJwt(validClaims("ann", ["analyst"], { exp: now() - 600, iat: now() - 4000 })),
  ],
  ["another user's valid token", () => stranger],
];
/** What each intruder must get: an authentication error, or a denial for the valid stranger. */
const REFUSAL = /UNAUTHENTICATED|POLICY_DENIED|401/;

const auth = (token: string | undefined) =>
  token === undefined ? {} : { serviceParameters: { Authorization: `Bearer ${token}` } };

describe("security - tenant isolation: every read of a run, at every edge, is the reader's to make", () => {
  let nats: NatsUsersServer;
  let orchestrator: NatsConnection;
  let submitter: NatsConnection;
  let logDir: string;
  let baseUrl: string;
  let client: Client;
  const stacks: Stack[] = [];
  let runId = "";
  let contextId = "";

  /** `loom <args>` connected as the `submitter` NATS user, as an application would be. */
  async function cli(args: string[], token: string | undefined) {
    const tokenArgs = token === undefined ? [] : ["--token", token];
    try {
      const { stdout, stderr } = await run(
        process.execPath,
        [CLI, "--nats", nats.urlAs("submitter"), ...tokenArgs, ...args],
        { cwd: REPO_ROOT, timeout: 60_000, env: { ...process.env, LOOM_TOKEN: "" } },
      );
      return { code: 0, stdout, stderr };
    } catch (error) {
      const failed = error as { code?: number; stdout?: string; stderr?: string };
      return { code: failed.code ?? -1, stdout: failed.stdout ?? "", stderr: failed.stderr ?? "" };
    }
  }

  const cliRefuses = async (args: string[], token: string | undefined) => {
    const result = await cli(args, token);
    return result.code !== 0 && REFUSAL.test(result.stderr) && !result.stdout.includes("Ada");
  };

  beforeAll(async () => {
    nats = await startNatsWithUsers();
    orchestrator = await nats.connectAs("orchestrator");
    submitter = await nats.connectAs("submitter");
    logDir = await mkdtemp(join(tmpdir(), "loom-tenant-"));
    const port = await freePort();
    baseUrl = `http://127.0.0.1:${port}`;
    stacks.push(
      ...(await nats.startServices(["acp-policy", "mcp-worker", "llm-agent", "orchestrator"], {
        logDir,
        env: {
          LOOM_A2A_PORT: String(port),
          LOOM_A2A_WEBHOOK_ALLOW: "http://127.0.0.1:9/hooks/",
          OTEL_TRACES_EXPORTER: "none",
        },
      })),
    );
    await waitUntilReady(orchestrator, { tools: ["time.get_time", "crm.get_contact"], timeoutMs: 90_000 });
    client = await new ClientFactory().createFromUrl(baseUrl);
    // The owner's run, through the CLI as the submitter user: --watch follows it to its end.
    contextId = `ctx-${now()}`;
    const submitted = await cli(
      ["submit", "hello", "--input", '{"contactId":"c-1"}', "--context", contextId, "--watch", "--json"],
      owner,
    );
    expect(submitted.code, submitted.stderr).toBe(0);
    const summary = JSON.parse(submitted.stdout) as {
      runId: string;
      state: string;
      output: { greeting: string };
    };
    expect(summary.state).toBe("completed");
    expect(summary.output.greeting).toBe("Hello, Ada Lovelace");
    runId = summary.runId;
  }, 240_000);

  afterAll(async () => {
    await Promise.all(stacks.map((stack) => stack.stop()));
    await submitter?.close();
    await orchestrator?.close();
    await nats?.[Symbol.asyncDispose]();
    await rm(logDir, { recursive: true, force: true });
  });

  it("tenant isolation - the CLI: runs get, runs list, submit --watch, memory get and clear, workflow apply", {
    timeout: 600_000,
  }, async () => {
    for (const [who, token] of intruders) {
      await attack(AttackClass.TENANT_ISOLATION, `cli runs get with ${who}`, () =>
        cliRefuses(["runs", "get", runId], token()),
      );
      await attack(AttackClass.TENANT_ISOLATION, `cli memory get with ${who}`, () =>
        cliRefuses(["memory", "get", contextId, "--json"], token()),
      );
      await attack(AttackClass.TENANT_ISOLATION, `cli memory clear with ${who}`, () =>
        cliRefuses(["memory", "clear", contextId], token()),
      );
      await attack(AttackClass.TENANT_ISOLATION, `cli workflow apply with ${who}`, () =>
        cliRefuses(["workflow", "apply", "workflows/hello.yaml"], token()),
      );
    }
    await attack(
      AttackClass.TENANT_ISOLATION,
      "cli runs list as another user shows none of the owner's runs",
      async () => {
        const listed = await cli(["runs", "list", "--json"], stranger);
        return listed.code === 0 && !listed.stdout.includes(runId);
      },
    );
    await attack(AttackClass.TENANT_ISOLATION, "cli runs list with a garbage token", () =>
      cliRefuses(["runs", "list"], "x"),
    );

    await control("the owner reads its run, its memory, and lists it", async () => {
      const got = await cli(["runs", "get", runId, "--json"], owner);
      const listed = await cli(["runs", "list", "--json"], owner);
      const memory = await cli(["memory", "get", contextId, "--json"], owner);
      return (
        got.code === 0 &&
        got.stdout.includes("Hello, Ada Lovelace") &&
        listed.stdout.includes(runId) &&
        memory.stdout.includes(runId)
      );
    });
    await control("an admin reads and lists anyone's run and registers a workflow", async () => {
      const got = await cli(["runs", "get", runId], admin);
      const listed = await cli(
        ["runs", "list", "--workflow", "hello", "--state", "completed", "--json"],
        admin,
      );
      const applied = await cli(["workflow", "apply", "workflows/hello.yaml"], admin);
      return got.code === 0 && listed.stdout.includes(runId) && applied.code === 0;
    });
    await control("the owner clears its memory", async () => {
      const cleared = await cli(["memory", "clear", contextId], owner);
      const memory = await cli(["memory", "get", contextId, "--json"], owner);
      return cleared.code === 0 && !memory.stdout.includes(runId);
    });
  });

  it("tenant isolation - a viewer reads its own run masked, and never an admin's", {
    timeout: 300_000,
  }, async () => {
    const mine = await cli(
      [
        "submit",
        "hello",
        "--input",
        '{"contactId":"c-1","note":"mail ada@example.com"}',
        "--watch",
        "--json",
      ],
      viewer,
    );
    expect(mine.code, mine.stderr).toBe(0);
    const viewerRun = (JSON.parse(mine.stdout) as { runId: string }).runId;
    await control("the viewer reads its own run with the email in its input masked", async () => {
      const got = await cli(["runs", "get", viewerRun, "--json"], viewer);
      return got.code === 0 && got.stdout.includes("[masked]") && !got.stdout.includes("ada@example.com");
    });
    await attack(AttackClass.TENANT_ISOLATION, "a viewer reads an admin's run", async () => {
      const adminRun = await cli(
        ["submit", "hello", "--input", '{"contactId":"c-2"}', "--watch", "--json"],
        admin,
      );
      const id = (JSON.parse(adminRun.stdout) as { runId: string }).runId;
      return cliRefuses(["runs", "get", id], viewer);
    });
  });

  it("tenant isolation - a run in someone else's context does not see its memory", {
    timeout: 300_000,
  }, async () => {
    const shared = `ctx-shared-${now()}`;
    const remember = (token: string) =>
      cli(
        ["submit", "remember", "--context", shared, "--input", '{"contactId":"c-1"}', "--watch", "--json"],
        token,
      );
    const first = await remember(owner);
    expect(first.code, first.stderr).toBe(0);
    await attack(
      AttackClass.TENANT_ISOLATION,
      "another user's run reads the owner's context memory as $memory",
      async () => {
        const stolen = await remember(stranger);
        return (
          stolen.code !== 0 &&
          stolen.stdout.includes("POLICY_DENIED") &&
          !stolen.stdout.includes("seenBefore")
        );
      },
    );
    await control("the owner's next run in its context sees the earlier one", async () => {
      const again = await remember(owner);
      return (JSON.parse(again.stdout) as { output: { earlierRuns: number } }).output.earlierRuns >= 1;
    });
  });

  it("tenant isolation - A2A JSON-RPC: GetTask, ListTasks, SubscribeToTask and every push config method", async () => {
    const a2aRefuses = async (call: () => Promise<unknown>) => {
      try {
        await call();
        return false;
      } catch (error) {
        return /401|UNAUTHENTICATED|POLICY_DENIED|bearer token|token refused/i.test(String(error));
      }
    };
    for (const [who, token] of intruders) {
      const options = auth(token());
      await attack(AttackClass.TENANT_ISOLATION, `a2a GetTask with ${who}`, () =>
        a2aRefuses(() => client.getTask({ tenant: "", id: runId }, options)),
      );
      await attack(AttackClass.TENANT_ISOLATION, `a2a SubscribeToTask with ${who}`, () =>
        a2aRefuses(async () => {
          for await (const _event of client.resubscribeTask({ tenant: "", id: runId }, options)) return;
        }),
      );
      await attack(
        AttackClass.TENANT_ISOLATION,
        `a2a CreateTaskPushNotificationConfig with ${who}`,
        async () => {
          const refused = await a2aRefuses(() =>
            client.createTaskPushNotificationConfig(
              {
                tenant: "",
                taskId: runId,
                id: `hook-${now()}`,
                url: "http://127.0.0.1:9/hooks/steal",
                token: "",
                authentication: undefined,
              },
              options,
            ),
          );
          const configs = await client.listTaskPushNotificationConfig(
            { tenant: "", taskId: runId, pageSize: 0, pageToken: "" },
            auth(owner),
          );
          return refused && configs.configs.length === 0;
        },
      );
      await attack(AttackClass.TENANT_ISOLATION, `a2a ListTaskPushNotificationConfigs with ${who}`, () =>
        a2aRefuses(() =>
          client.listTaskPushNotificationConfig(
            { tenant: "", taskId: runId, pageSize: 0, pageToken: "" },
            options,
          ),
        ),
      );
      await attack(AttackClass.TENANT_ISOLATION, `a2a GetTaskPushNotificationConfig with ${who}`, () =>
        a2aRefuses(() =>
          client.getTaskPushNotificationConfig({ tenant: "", taskId: runId, id: "owner-hook" }, options),
        ),
      );
      await attack(AttackClass.TENANT_ISOLATION, `a2a DeleteTaskPushNotificationConfig with ${who}`, () =>
        a2aRefuses(() =>
          client.deleteTaskPushNotificationConfig({ tenant: "", taskId: runId, id: "owner-hook" }, options),
        ),
      );
    }
    await attack(
      AttackClass.TENANT_ISOLATION,
      "a2a ListTasks as another user lists none of the owner's tasks",
      async () => {
        const listed = await client.listTasks(
          {
            tenant: "",
            contextId: "",
            status: 0,
            pageSize: 100,
            pageToken: "",
            historyLength: 0,
            statusTimestampAfter: undefined,
            includeArtifacts: true,
          },
          auth(stranger),
        );
        return !listed.tasks.some((task) => task.id === runId);
      },
    );
    await control("the owner gets, lists and subscribes to its task and manages its webhooks", async () => {
      const task = await client.getTask({ tenant: "", id: runId }, auth(owner));
      const listed = await client.listTasks(
        {
          tenant: "",
          contextId: "",
          status: 0,
          pageSize: 100,
          pageToken: "",
          historyLength: 0,
          statusTimestampAfter: undefined,
          includeArtifacts: true,
        },
        auth(owner),
      );
      const hook = await client.createTaskPushNotificationConfig(
        {
          tenant: "",
          taskId: runId,
          id: "owner-hook",
          url: "http://127.0.0.1:9/hooks/mine",
          token: "",
          authentication: undefined,
        },
        auth(owner),
      );
      const got = await client.getTaskPushNotificationConfig(
        { tenant: "", taskId: runId, id: "owner-hook" },
        auth(owner),
      );
      await client.deleteTaskPushNotificationConfig(
        { tenant: "", taskId: runId, id: "owner-hook" },
        auth(owner),
      );
      let subscribed = false;
      for await (const _event of client.resubscribeTask({ tenant: "", id: runId }, auth(owner))) {
        subscribed = true;
        break;
      }
      return (
        task.id === runId &&
        listed.tasks.some((listedTask) => listedTask.id === runId) &&
        hook.id === "owner-hook" &&
        got.url.endsWith("/mine") &&
        subscribed
      );
    });
    await control("an admin gets the owner's task", async () => {
      const task = await client.getTask({ tenant: "", id: runId }, auth(admin));
      return task.id === runId;
    });
  });

  it("tenant isolation - A2A HTTP+JSON: a task read with a bad token or by another user is refused", async () => {
    const get = (token: string | undefined) =>
      fetch(`${baseUrl}/a2a/rest/tasks/${runId}`, {
        headers: {
          "A2A-Version": "1.0",
          ...(token === undefined ? {} : { authorization: `Bearer ${token}` }),
        },
      });
    for (const [who, token] of intruders) {
      await attack(AttackClass.TENANT_ISOLATION, `a2a REST GET task with ${who}`, async () => {
        const response = await get(token());
        const body = await response.text();
        const refused =
          response.status === 401 || (response.status === 404 && body.includes("POLICY_DENIED"));
        return refused && !body.includes("Ada");
      });
    }
    await control("the owner reads its task over REST", async () => {
      const response = await get(owner);
      return response.ok && (await response.text()).includes("Hello, Ada Lovelace");
    });
  });

  it("tenant isolation - the submitter NATS user reads no run record, memory or event directly", async () => {
    await attack(AttackClass.TENANT_ISOLATION, "raw KV get of loom_runs as the submitter", async () => {
      try {
        const kv = await new Kvm(submitter).open("loom_runs");
        await kv.get(runId);
        return false;
      } catch (error) {
        return /permission|denied|timeout/i.test(String(error));
      }
    });
    await attack(AttackClass.TENANT_ISOLATION, "raw KV get of loom_memory as the submitter", async () => {
      try {
        const kv = await new Kvm(submitter).open("loom_memory");
        await kv.get(contextId);
        return false;
      } catch (error) {
        return /permission|denied|timeout/i.test(String(error));
      }
    });
    await attack(AttackClass.TENANT_ISOLATION, "raw consumer on LOOM_EVENTS as the submitter", async () => {
      try {
        const consumer = await jetstream(submitter, { timeout: 3_000 }).consumers.get(Streams.EVENTS, {
          filter_subjects: `loom.v1.runs.${runId}.events`,
        });
        const message = await consumer.next({ expires: 2_000 });
        return message === null;
      } catch (error) {
        return /permission|denied|timeout/i.test(String(error));
      }
    });
  });
});
