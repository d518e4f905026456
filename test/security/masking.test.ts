import { rm } from "node:fs/promises";
import { join } from "node:path";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import {
  type CallToolResult,
  type CreateMessageRequest,
  CreateMessageRequestSchema,
  type ElicitRequest,
  ElicitRequestSchema,
  type LoggingMessageNotification,
  LoggingMessageNotificationSchema,
} from "@modelcontextprotocol/sdk/types.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CONTACTS } from "../../services/mcp-servers/crm-data.ts";
import { AttackClass, attack, control } from "../helpers/attack-tally.ts";
import { bucketPlaces, leaksIn, logPlaces, type Place, streamPlaces } from "../helpers/leak-scan.ts";
import { LEAKY_WORKFLOWS, writeLeakyConfig } from "../helpers/leaky-config.ts";
import { type Loom, startLoom, tokenFor } from "../helpers/loom.ts";
import { freePort } from "../helpers/ports.ts";

const MASK = "[masked]";
const SECRETS = CONTACTS.flatMap((contact) => [contact.email, contact.ssn]);
const [ada] = CONTACTS as [(typeof CONTACTS)[number]];
const viewer = tokenFor("vic", "viewer");
const analyst = tokenFor("ann", "analyst");

const hasSecret = (text: string) => SECRETS.some((secret) => text.includes(secret));
/** Masked: no secret, and the mask shows something was there. */
const masked = (text: string) => !hasSecret(text) && text.includes(MASK);

/** What one `loom submit --watch --json` printed, and the run it started. */
interface Submitted {
  runId: string;
  summary: { state: string; error?: { message: string }; progress?: Array<{ message?: string }> };
  output: string;
}

describe("security - masking on every path out of the worker, for a masked caller", () => {
  let loom: Loom;
  let dir: string;
  let mcpUrl: URL;
  const clients: Client[] = [];
  const runs = new Map<string, Submitted>();

  async function submit(file: keyof typeof LEAKY_WORKFLOWS, token: string): Promise<Submitted> {
    const result = await loom.cli(["submit", join(dir, file), "--watch", "--json"], {
      token,
      timeoutMs: 60_000,
    });
    const last = result.stdout.trim().split("\n").at(-1) ?? "";
    expect(last, result.stderr).toMatch(/^\{/);
    const summary = JSON.parse(last) as Submitted["summary"] & { runId: string };
    return { runId: summary.runId, summary, output: result.stdout + result.stderr };
  }

  /** Each workflow once as the viewer and once as the analyst, before any attack looks. */
  async function run(file: keyof typeof LEAKY_WORKFLOWS, who: "viewer" | "analyst"): Promise<Submitted> {
    const key = `${file}:${who}`;
    const known = runs.get(key);
    if (known !== undefined) return known;
    const submitted = await submit(file, who === "viewer" ? viewer : analyst);
    runs.set(key, submitted);
    return submitted;
  }

  /** Everything a run left behind: events, records, steps, memory, audit, call records, log lines. */
  async function placesOf(submitted: Submitted): Promise<Place[]> {
    const all = [
      ...(await streamPlaces(loom.observer)),
      ...(await bucketPlaces(loom.observer)),
      ...(await logPlaces(loom.logDir)),
    ];
    return [
      { where: "cli output", text: submitted.output },
      ...all.filter((place) => `${place.where} ${place.text}`.includes(submitted.runId)),
    ];
  }

  /** A gateway client as `token`, answering sampling and elicitation and keeping what it was asked. */
  async function gatewayClient(token: string) {
    const heard = {
      sampling: [] as CreateMessageRequest["params"][],
      elicitation: [] as ElicitRequest["params"][],
      logs: [] as LoggingMessageNotification["params"][],
    };
    const client = new Client(
      { name: "masking-attack", version: "1.0.0" },
      { capabilities: { sampling: {}, elicitation: {} } },
    );
    client.setRequestHandler(CreateMessageRequestSchema, (request) => {
      heard.sampling.push(request.params);
      return { model: "client-model", role: "assistant", content: { type: "text", text: "fine" } };
    });
    client.setRequestHandler(ElicitRequestSchema, (request) => {
      heard.elicitation.push(request.params);
      return { action: "decline" };
    });
    client.setNotificationHandler(LoggingMessageNotificationSchema, (notification) => {
      heard.logs.push(notification.params);
    });
    await client.connect(
      new StreamableHTTPClientTransport(mcpUrl, {
        requestInit: { headers: { Authorization: `Bearer ${token}` } },
      }),
    );
    clients.push(client);
    const call = async (
      name: string,
      args: Record<string, unknown> = {},
      onprogress?: (p: unknown) => void,
    ) =>
      (await client.callTool(
        { name: `leaky.${name}`, arguments: args },
        undefined,
        onprogress === undefined ? {} : { onprogress },
      )) as CallToolResult;
    return { client, heard, call };
  }
  let asViewer: Awaited<ReturnType<typeof gatewayClient>>;
  let asAnalyst: Awaited<ReturnType<typeof gatewayClient>>;

  beforeAll(async () => {
    const config = await writeLeakyConfig("loom-masking-", LEAKY_WORKFLOWS);
    dir = config.dir;
    const port = await freePort();
    mcpUrl = new URL(`http://127.0.0.1:${port}/mcp`);
    loom = await startLoom({
      env: {
        ...config.env,
        LOOM_A2A_PORT: String(port),
        // Nobody answers a workflow's question: the server is told cancel after this long.
        LOOM_ELICITATION_TIMEOUT_MS: "1500",
        OTEL_TRACES_EXPORTER: "none",
      },
      tools: ["leaky.leak_error", "leaky.leak_sample", "crm.get_contact"],
    });
    asViewer = await gatewayClient(viewer);
    asAnalyst = await gatewayClient(analyst);
  }, 120_000);
  afterAll(async () => {
    await Promise.all(clients.map((client) => client.close()));
    await loom?.[Symbol.asyncDispose]();
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  const textOf = (result: CallToolResult) =>
    result.content.map((block) => (block.type === "text" ? block.text : "")).join("\n");

  describe("workflow runs (loom submit)", () => {
    const failures = [
      ["an isError result's text", "leak-error.yaml"],
      ["a server's thrown error", "leak-throw.yaml"],
      ["a failed resource read's error", "leak-read.yaml"],
    ] as const;
    it.each(failures)("masking - %s reaches a viewer's run error masked", async (name, file) => {
      const seen = await run(file, "viewer");
      await attack(AttackClass.MASKING, `${name} reaches a viewer's run error masked`, async () => {
        const leaks = leaksIn(await placesOf(seen), SECRETS);
        return (
          seen.summary.state === "failed" && masked(seen.summary.error?.message ?? "") && leaks.length === 0
        );
      });
      await control(
        `${name} reaches an analyst's run error as it is`,
        async () => (await run(file, "analyst")).summary.error?.message.includes(ada.email) === true,
      );
    });

    it("masking - a failed resource read shows in a viewer's run trace masked", async () => {
      const [name, file] = ["a failed resource read", "leak-read.yaml"] as const;
      // Spans reach LOOM_SPANS a few seconds after they end: wait for the failed MCP call's.
      const failedSpans = async (submitted: Submitted, token: string) => {
        const deadline = Date.now() + 20_000;
        for (;;) {
          const trace = await loom.cli(["runs", "trace", submitted.runId, "--json"], { token });
          const { spans = [] } = JSON.parse(trace.stdout || "{}") as {
            spans?: Array<{ name: string; statusMessage?: string }>;
          };
          const failed = spans.filter((span) => span.statusMessage !== undefined);
          const call = failed.some((span) => /^(tools\/call|resources\/read) /.test(span.name));
          if (call || Date.now() > deadline) return JSON.stringify(failed);
          await new Promise((resolve) => setTimeout(resolve, 500));
        }
      };
      const seen = await run(file, "viewer");
      await attack(AttackClass.MASKING, `${name} shows in a viewer's run trace masked`, async () =>
        masked(await failedSpans(seen, viewer)),
      );
      await control(`${name} shows in an analyst's run trace as it is`, async () =>
        (await failedSpans(await run(file, "analyst"), analyst)).includes(ada.email),
      );
    });

    it("masking - progress messages reach a viewer's run events masked", async () => {
      const seen = await run("leak-paths.yaml", "viewer");
      await attack(AttackClass.MASKING, "progress messages reach a viewer's run events masked", async () => {
        const messages = (seen.summary.progress ?? []).map((progress) => progress.message ?? "").join("\n");
        return seen.summary.state === "completed" && masked(messages);
      });
      await control("progress messages reach an analyst's run as they are", async () =>
        hasSecret(JSON.stringify((await run("leak-paths.yaml", "analyst")).summary.progress ?? [])),
      );
    });

    it("masking - a server's log messages during a viewer's call are logged masked", async () => {
      const seen = await run("leak-paths.yaml", "viewer");
      const serverLogs = async (runId: string) =>
        (await logPlaces(loom.logDir))
          .filter((place) => place.text.includes(runId) && place.text.includes("MCP server log"))
          .map((place) => place.text)
          .join("\n");
      await attack(
        AttackClass.MASKING,
        "a server's log messages during a viewer's call are logged masked",
        async () => masked(await serverLogs(seen.runId)),
      );
      await control("a server's log messages during an analyst's call are logged as they are", async () =>
        hasSecret(await serverLogs((await run("leak-paths.yaml", "analyst")).runId)),
      );
    });

    it("masking - a server's elicitation reaches a viewer's run events masked", async () => {
      const seen = await run("leak-paths.yaml", "viewer");
      const asked = async (runId: string) =>
        (await streamPlaces(loom.observer))
          .filter((place) => place.where.includes(runId) && place.text.includes("still right?"))
          .map((place) => place.text)
          .join("\n");
      await attack(
        AttackClass.MASKING,
        "a server's elicitation reaches a viewer's run events masked",
        async () => {
          const text = await asked(seen.runId);
          return text !== "" && masked(text);
        },
      );
      await control("a server's elicitation reaches an analyst's run events as it is", async () =>
        (await asked((await run("leak-paths.yaml", "analyst")).runId)).includes(ada.email),
      );
    });

    it("masking - a server's sampling request reaches the llm agent masked for a viewer", async () => {
      const seen = await run("leak-paths.yaml", "viewer");
      // The server answers with what the model said base64-encoded: result masking cannot hide it.
      const modelHeard = async (submitted: Submitted) => {
        const place = (await placesOf(submitted)).find((candidate) =>
          /model heard \(base64\): [A-Za-z0-9+/=]+/.test(candidate.text),
        );
        const encoded = /model heard \(base64\): ([A-Za-z0-9+/=]+)/.exec(place?.text ?? "")?.[1] ?? "";
        return Buffer.from(encoded, "base64").toString("utf8");
      };
      await attack(
        AttackClass.MASKING,
        "a server's sampling request reaches the llm agent masked for a viewer",
        async () => masked(await modelHeard(seen)),
      );
      await control("a server's sampling request reaches the llm agent as it is for an analyst", async () =>
        (await modelHeard(await run("leak-paths.yaml", "analyst"))).includes(ada.email),
      );
    });

    it("masking - nothing of a viewer's run (prompt, cached call, events, memory, records, logs) holds personal data", async () => {
      const seen = await run("leak-paths.yaml", "viewer");
      await attack(
        AttackClass.MASKING,
        "nothing of a viewer's run (prompt, cached call, events, memory, records, logs) holds personal data",
        async () => {
          const places = await placesOf(seen);
          return (
            leaksIn(places, SECRETS).length === 0 &&
            places.some((place) => place.where.startsWith("kv loom_memory")) &&
            places.some((place) => place.text.includes(`Write to ${MASK}`))
          );
        },
      );
      await control(
        "an analyst's run of the same workflow holds the data",
        async () => leaksIn(await placesOf(await run("leak-paths.yaml", "analyst")), SECRETS).length > 0,
      );
    });
  });

  describe("MCP gateway", () => {
    const results = [
      ["an isError result", "leak_error"],
      ["a server's thrown error", "leak_throw"],
    ] as const;
    it.each(results)("masking - %s reaches a viewer's gateway client masked", async (name, tool) => {
      await attack(AttackClass.MASKING, `${name} reaches a viewer's gateway client masked`, async () => {
        const result = await asViewer.call(tool);
        return result.isError === true && masked(JSON.stringify(result));
      });
      await control(`${name} reaches an analyst's gateway client as it is`, async () =>
        textOf(await asAnalyst.call(tool)).includes(ada.email),
      );
    });

    it("masking - progress and log notifications reach a viewer's gateway client masked", async () => {
      const progress = async (as: typeof asViewer) => {
        const heard: unknown[] = [];
        await as.call("leak_progress", {}, (report) => heard.push(report));
        return { progress: JSON.stringify(heard), logs: JSON.stringify(as.heard.logs) };
      };
      const seen = await progress(asViewer);
      await attack(
        AttackClass.MASKING,
        "progress notifications reach a viewer's gateway client masked",
        async () => masked(seen.progress),
      );
      await attack(
        AttackClass.MASKING,
        "log notifications reach a viewer's gateway client masked",
        async () => masked(seen.logs),
      );
      await control("progress and log notifications reach an analyst's client as they are", async () => {
        const plain = await progress(asAnalyst);
        return plain.progress.includes(CONTACTS[1]?.email ?? "?") && plain.logs.includes(ada.email);
      });
    });

    it("masking - a server's elicitation and sampling requests reach a viewer's gateway client masked", async () => {
      await asViewer.call("leak_elicit");
      await asViewer.call("leak_sample");
      await attack(
        AttackClass.MASKING,
        "a server's elicitation request reaches a viewer's gateway client masked",
        async () =>
          asViewer.heard.elicitation.length === 1 && masked(JSON.stringify(asViewer.heard.elicitation)),
      );
      await attack(
        AttackClass.MASKING,
        "a server's sampling request reaches a viewer's gateway client masked",
        async () => asViewer.heard.sampling.length === 1 && masked(JSON.stringify(asViewer.heard.sampling)),
      );
      await control("an analyst's client is asked as the server asked", async () => {
        await asAnalyst.call("leak_elicit");
        await asAnalyst.call("leak_sample");
        return (
          JSON.stringify(asAnalyst.heard.elicitation).includes(ada.email) &&
          JSON.stringify(asAnalyst.heard.sampling).includes(ada.email)
        );
      });
    });

    it("masking - a failed resource read reaches a viewer's gateway client masked", async () => {
      const read = (as: typeof asViewer) =>
        as.client.readResource({ uri: "leaky://broken/c-1" }).then(
          (result) => JSON.stringify(result),
          (error: Error) => error.message,
        );
      await attack(
        AttackClass.MASKING,
        "a failed resource read reaches a viewer's gateway client masked",
        async () => masked(await read(asViewer)),
      );
      await control("a failed resource read reaches an analyst's client as it is", async () =>
        (await read(asAnalyst)).includes(ada.email),
      );
    });

    it("masking - a prompt and its completions reach a viewer's gateway client masked", async () => {
      const prompt = (as: typeof asViewer) =>
        as.client
          .getPrompt({ name: "leaky.leak_prompt", arguments: { who: "the team" } })
          .then(JSON.stringify);
      const complete = (as: typeof asViewer) =>
        as.client
          .complete({
            ref: { type: "ref/prompt", name: "leaky.leak_prompt" },
            argument: { name: "who", value: "" },
          })
          .then(JSON.stringify);
      await attack(AttackClass.MASKING, "a prompt reaches a viewer's gateway client masked", async () =>
        masked(await prompt(asViewer)),
      );
      await attack(AttackClass.MASKING, "completions reach a viewer's gateway client masked", async () =>
        masked(await complete(asViewer)),
      );
      await control(
        "a prompt and its completions reach an analyst as they are",
        async () =>
          (await prompt(asAnalyst)).includes(ada.email) && (await complete(asAnalyst)).includes(ada.email),
      );
    });

    it("masking - a cached answer an analyst's call stored reaches a viewer masked", async () => {
      await control("an analyst's call of a cacheable tool sees the contact", async () =>
        textOf(await asAnalyst.call("contact", { id: "c-3" })).includes(CONTACTS[2]?.email ?? "?"),
      );
      await attack(
        AttackClass.MASKING,
        "a cached answer an analyst's call stored reaches a viewer masked",
        async () => masked(JSON.stringify(await asViewer.call("contact", { id: "c-3" }))),
      );
    });
  });
});
