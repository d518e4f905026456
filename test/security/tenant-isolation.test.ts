import { execFile } from "node:child_process";
import { randomUUID } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { SendMessageRequest } from "@a2a-js/sdk";
import { type Client, ClientFactory } from "@a2a-js/sdk/client";
import { jetstream } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  FeedbackContract,
  RunCancelContract,
  RunGetContract,
  RunInputContract,
  RunWatchContract,
} from "../../schemas/contracts.ts";
import {
  Headers,
  runCancelSubject,
  runFeedbackSubject,
  runInputSubject,
  Streams,
  Subjects,
} from "../../schemas/subjects.ts";
import { type Stack, waitUntilReady } from "../../services/cli/stack.ts";
import { type LoomError, request } from "../../services/kit/index.ts";
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
/**
 * What each intruder must get: an authentication error, or for the valid stranger what an unknown
 * run gets (RUN_NOT_FOUND), or a denial for what is no run (registering a workflow).
 */
const REFUSAL = /UNAUTHENTICATED|RUN_NOT_FOUND|POLICY_DENIED|401/;

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

  /**
   * A memory command on the owner's context is refused (a bad token), or answered exactly as for a
   * context that has no memory (a valid stranger): nothing of the owner's shows, nor that it exists.
   */
  const memoryHidden = async (command: string[], token: string | undefined) => {
    const unknown = `ctx-unknown-${now()}`;
    const [owners, none] = await Promise.all([
      cli([...command, contextId, "--json"], token),
      cli([...command, unknown, "--json"], token),
    ]);
    const same =
      owners.code === none.code &&
      owners.stdout.replaceAll(contextId, "<ctx>") === none.stdout.replaceAll(unknown, "<ctx>");
    const refused = owners.code !== 0 && REFUSAL.test(owners.stderr);
    return (refused || same) && !owners.stdout.includes(runId);
  };

  /** The run as its owner reads it, once it is in `state`. */
  async function waitForState(id: string, state: string): Promise<{ state: string }> {
    for (let tries = 0; tries < 100; tries += 1) {
      const got = await cli(["runs", "get", id, "--json"], owner);
      if (got.code === 0 && (JSON.parse(got.stdout) as { state: string }).state === state)
        return JSON.parse(got.stdout);
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    throw new Error(`run ${id} never reached ${state}`);
  }

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
    // The intruders are independent of each other: each tries its commands in a lane of its own.
    await Promise.all([
      ...intruders.map(async ([who, token]) => {
        await attack(AttackClass.TENANT_ISOLATION, `cli runs get with ${who}`, () =>
          cliRefuses(["runs", "get", runId], token()),
        );
        await attack(AttackClass.TENANT_ISOLATION, `cli memory get with ${who}`, () =>
          memoryHidden(["memory", "get"], token()),
        );
        await attack(AttackClass.TENANT_ISOLATION, `cli memory clear with ${who}`, () =>
          memoryHidden(["memory", "clear"], token()),
        );
        await attack(AttackClass.TENANT_ISOLATION, `cli workflow apply with ${who}`, () =>
          cliRefuses(["workflow", "apply", "workflows/hello.yaml"], token()),
        );
      }),
      (async () => {
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
      })(),
    ]);

    await control("the owner reads its run, its memory, and lists it", async () => {
      const [got, listed, memory] = await Promise.all([
        cli(["runs", "get", runId, "--json"], owner),
        cli(["runs", "list", "--json"], owner),
        cli(["memory", "get", contextId, "--json"], owner),
      ]);
      return (
        got.code === 0 &&
        got.stdout.includes("Hello, Ada Lovelace") &&
        listed.stdout.includes(runId) &&
        memory.stdout.includes(runId)
      );
    });
    await control("an admin reads and lists anyone's run and registers a workflow", async () => {
      const [got, listed, applied] = await Promise.all([
        cli(["runs", "get", runId], admin),
        cli(["runs", "list", "--workflow", "hello", "--state", "completed", "--json"], admin),
        cli(["workflow", "apply", "workflows/hello.yaml"], admin),
      ]);
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
        return /401|UNAUTHENTICATED|RUN_NOT_FOUND|bearer token|token refused/i.test(String(error));
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
          response.status === 401 || (response.status === 404 && body.includes("RUN_NOT_FOUND"));
        return refused && !body.includes("Ada");
      });
    }
    await control("the owner reads its task over REST", async () => {
      const response = await get(owner);
      return response.ok && (await response.text()).includes("Hello, Ada Lovelace");
    });
  });

  it("tenant isolation - a run the caller may not act on answers as one that does not exist: every verb, every edge", {
    timeout: 600_000,
  }, async () => {
    // A run of the owner's that waits for input, beside the completed one: cancel and input on it
    // would be allowed by its state, on the completed one they would be refused by it.
    const submitted = await cli(
      ["submit", "test/security/workflows/approve-then-call.yaml", "--json"],
      owner,
    );
    expect(submitted.code, submitted.stderr).toBe(0);
    const waitingRun = (JSON.parse(submitted.stdout) as { runId: string }).runId;
    await waitForState(waitingRun, "input-required");
    const unknown = randomUUID();

    /** One verb at one edge, for a run id: its answer with the id made anonymous. */
    type Verb = [name: string, ask: (id: string) => Promise<string>];
    const anonymous = (text: string, id: string) => text.replaceAll(id, "<id>");
    const onBus = (ask: (id: string) => Promise<unknown>) => async (id: string) =>
      ask(id).then(
        (reply) => `ok ${JSON.stringify(reply)}`,
        (error: LoomError) => `${error.code}: ${error.message}`,
      );
    const headers = (token: string) => ({ headers: { [Headers.AUTHORIZATION]: `Bearer ${token}` } });
    const busVerbs = (token: string): Verb[] => [
      [
        "bus runs.get",
        onBus((id) =>
          request(
            submitter,
            Subjects.RUNS_GET,
            RunGetContract,
            { runId: id },
            { timeoutMs: 10_000, ...headers(token) },
          ),
        ),
      ],
      [
        "bus runs.watch",
        onBus((id) =>
          request(
            submitter,
            Subjects.RUNS_WATCH,
            RunWatchContract,
            { runId: id, afterSequence: 0, waitMs: 0 },
            { timeoutMs: 10_000, ...headers(token) },
          ),
        ),
      ],
      [
        "bus input",
        onBus((id) =>
          request(
            submitter,
            runInputSubject(id),
            RunInputContract,
            { approved: true },
            {
              timeoutMs: 10_000,
              ...headers(token),
            },
          ),
        ),
      ],
      [
        "bus cancel",
        onBus((id) =>
          request(
            submitter,
            runCancelSubject(id),
            RunCancelContract,
            { reason: "mine now" },
            {
              timeoutMs: 10_000,
              ...headers(token),
            },
          ),
        ),
      ],
      [
        "bus feedback",
        onBus((id) =>
          request(
            submitter,
            runFeedbackSubject(id),
            FeedbackContract,
            { stepId: "contact", verdict: "bad" },
            {
              timeoutMs: 10_000,
              ...headers(token),
            },
          ),
        ),
      ],
    ];
    const onCli = (args: (id: string) => string[], token: string) => async (id: string) => {
      const result = await cli(args(id), token);
      return `exit ${result.code}: ${result.stderr.trim()}${result.stdout.trim()}`;
    };
    const cliVerbs = (token: string): Verb[] => [
      ["cli runs get", onCli((id) => ["runs", "get", id, "--json"], token)],
      ["cli runs cancel", onCli((id) => ["runs", "cancel", id], token)],
      ["cli runs input", onCli((id) => ["runs", "input", id, "--approve"], token)],
      ["cli feedback", onCli((id) => ["feedback", id, "contact", "--bad"], token)],
    ];
    const onA2a = (ask: (id: string) => Promise<unknown>) => async (id: string) =>
      ask(id).then(
        (reply) => `ok ${JSON.stringify(reply)}`,
        (error: Error) => `${error.name}: ${error.message}`,
      );
    const a2aVerbs = (token: string): Verb[] => {
      const options = auth(token);
      const hook = (id: string) => ({ tenant: "", taskId: id, id: "owner-hook" });
      return [
        ["a2a GetTask", onA2a((id) => client.getTask({ tenant: "", id }, options))],
        [
          "a2a CancelTask",
          onA2a((id) => client.cancelTask({ tenant: "", id, metadata: undefined }, options)),
        ],
        [
          "a2a SubscribeToTask",
          onA2a(async (id) => {
            const events = [];
            for await (const event of client.resubscribeTask({ tenant: "", id }, options)) {
              events.push(event);
              break;
            }
            return events;
          }),
        ],
        [
          "a2a SendMessage answering the task",
          onA2a((id) =>
            client.sendMessage(
              SendMessageRequest.fromJSON({
                message: {
                  messageId: randomUUID(),
                  role: "ROLE_USER",
                  taskId: id,
                  parts: [{ text: "approve" }],
                },
              }),
              options,
            ),
          ),
        ],
        [
          "a2a CreateTaskPushNotificationConfig",
          onA2a((id) =>
            client.createTaskPushNotificationConfig(
              { ...hook(id), url: "http://127.0.0.1:9/hooks/steal", token: "", authentication: undefined },
              options,
            ),
          ),
        ],
        [
          "a2a GetTaskPushNotificationConfig",
          onA2a((id) => client.getTaskPushNotificationConfig(hook(id), options)),
        ],
        [
          "a2a ListTaskPushNotificationConfigs",
          onA2a((id) =>
            client.listTaskPushNotificationConfig(
              { tenant: "", taskId: id, pageSize: 0, pageToken: "" },
              options,
            ),
          ),
        ],
        [
          "a2a DeleteTaskPushNotificationConfig",
          onA2a((id) => client.deleteTaskPushNotificationConfig(hook(id), options)),
        ],
        [
          "a2a REST GET task",
          async (id) => {
            const response = await fetch(`${baseUrl}/a2a/rest/tasks/${id}`, {
              headers: { "A2A-Version": "1.0", authorization: `Bearer ${token}` },
            });
            return `${response.status} ${await response.text()}`;
          },
        ],
      ];
    };

    const verbs = [...busVerbs(stranger), ...cliVerbs(stranger), ...a2aVerbs(stranger)];
    // Each verb at each edge is asked on its own: they run side by side, each with its own attack.
    await Promise.all(
      (
        [
          ["a completed run", runId],
          ["a run waiting for input", waitingRun],
        ] as const
      ).flatMap(([target, id]) =>
        verbs.map(([name, ask]) =>
          attack(AttackClass.TENANT_ISOLATION, `${name} on another's ${target} tells it exists`, async () => {
            const [theirs, none] = await Promise.all([
              ask(id).then((answer) => anonymous(answer, id)),
              ask(unknown).then((answer) => anonymous(answer, unknown)),
            ]);
            return theirs === none && /RUN_NOT_FOUND|TaskNotFound/.test(theirs) && !theirs.includes("Ada");
          }),
        ),
      ),
    );
    expect((await waitForState(waitingRun, "input-required")).state).toBe("input-required");

    await control(
      "the owner gets the real answers: the run, that it ended, that it may not approve",
      async () => {
        const [got, watched, input, cancel] = await Promise.all(
          busVerbs(owner)
            .slice(0, 4)
            .map(([, ask]) => ask(runId)),
        );
        const task = await a2aVerbs(owner)[0]?.[1](runId);
        const a2aCancel = await a2aVerbs(owner)[1]?.[1](runId);
        return (
          got?.startsWith("ok ") === true &&
          got.includes("Hello, Ada Lovelace") &&
          watched?.startsWith("ok ") === true &&
          // The owner sees the run, so is told the real refusal: approvals are for managers.
          input?.startsWith("POLICY_DENIED") === true &&
          cancel?.startsWith("RUN_NOT_WAITING") === true &&
          task?.startsWith("ok ") === true &&
          a2aCancel?.includes("already ended") === true
        );
      },
    );
    await control("an admin answering the ended run is told it already ended", async () => {
      const input = await busVerbs(admin)[2]?.[1](runId);
      return input?.startsWith("RUN_NOT_WAITING") === true && input.includes("already ended");
    });
    await control("the owner cancels its waiting run", async () => {
      const canceled = await busVerbs(owner)[3]?.[1](waitingRun);
      return canceled?.startsWith("ok ") === true && canceled.includes("CANCELED");
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
