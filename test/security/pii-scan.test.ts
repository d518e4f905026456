import { randomUUID } from "node:crypto";
import { rm } from "node:fs/promises";
import { join } from "node:path";
import { Message, SendMessageRequest } from "@a2a-js/sdk";
import { ClientFactory } from "@a2a-js/sdk/client";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import {
  CreateMessageRequestSchema,
  ElicitRequestSchema,
  LoggingMessageNotificationSchema,
} from "@modelcontextprotocol/sdk/types.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CONTACTS } from "../../services/mcp-servers/crm-data.ts";
import { bucketPlaces, leaksIn, logPlaces, type Place, streamPlaces } from "../helpers/leak-scan.ts";
import { LEAKY_WORKFLOWS, writeLeakyConfig } from "../helpers/leaky-config.ts";
import { type Loom, REPO_ROOT, startLoom, tokenFor } from "../helpers/loom.ts";
import { freePort } from "../helpers/ports.ts";

const SECRETS = CONTACTS.flatMap((contact) => [contact.email, contact.ssn]);

/**
 * Only masked callers (viewers) use this stack, over every path: workflow runs through the CLI,
 * the MCP gateway (tools, progress, logs, elicitation, sampling, reads, prompts, completions, a
 * cached read) and A2A; a second viewer then reads the first one's runs through every read path.
 * Afterwards no email or SSN of the crm demo may be anywhere: any stream, any KV bucket, any log
 * line, or anything either client was shown.
 */
describe("security - PII scan across masked callers' use of every path", () => {
  let loom: Loom;
  let dir: string;
  let port: number;
  const outputs: Place[] = [];
  const first = tokenFor("vic", "viewer");
  const second = tokenFor("val", "viewer");

  beforeAll(async () => {
    const config = await writeLeakyConfig("loom-pii-scan-", LEAKY_WORKFLOWS);
    dir = config.dir;
    port = await freePort();
    loom = await startLoom({
      env: { ...config.env, LOOM_A2A_PORT: String(port), LOOM_ELICITATION_TIMEOUT_MS: "1500" },
      tools: ["leaky.leak_error", "crm.get_contact", "time.get_time"],
    });
  }, 120_000);
  afterAll(async () => {
    await loom?.[Symbol.asyncDispose]();
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  async function cli(where: string, args: string[], token: string): Promise<string> {
    const result = await loom.cli(args, { token, timeoutMs: 60_000 });
    outputs.push({ where, text: result.stdout + result.stderr });
    return result.stdout;
  }

  /** Runs every workflow path as the first viewer; the run ids, for the second one to read. */
  async function workflows(): Promise<string[]> {
    const submits = [
      ...CONTACTS.map((contact) => ["hello", "--input", JSON.stringify({ contactId: contact.id })]),
      [join(REPO_ROOT, "test/security/workflows/list-contacts.yaml")],
      ...Object.keys(LEAKY_WORKFLOWS).map((file) => [join(dir, file)]),
    ];
    // Independent runs: submitted side by side, each watched to its end.
    return Promise.all(
      submits.map(async (args) => {
        const stdout = await cli(`loom submit ${args[0]}`, ["submit", ...args, "--watch", "--json"], first);
        const summary = JSON.parse(stdout.trim().split("\n").at(-1) ?? "{}") as { runId?: string };
        expect(summary.runId, stdout).toBeDefined();
        return summary.runId ?? "";
      }),
    );
  }

  /** Every gateway operation as the first viewer, keeping everything its client was sent. */
  async function gateway(): Promise<void> {
    const heard: unknown[] = [];
    const client = new Client(
      { name: "pii-scan", version: "1.0.0" },
      { capabilities: { sampling: {}, elicitation: {} } },
    );
    client.setRequestHandler(CreateMessageRequestSchema, (request) => {
      heard.push(request.params);
      return { model: "client-model", role: "assistant", content: { type: "text", text: "fine" } };
    });
    client.setRequestHandler(ElicitRequestSchema, (request) => {
      heard.push(request.params);
      return { action: "decline" };
    });
    client.setNotificationHandler(LoggingMessageNotificationSchema, (notification) => {
      heard.push(notification.params);
    });
    await client.connect(
      new StreamableHTTPClientTransport(new URL(`http://127.0.0.1:${port}/mcp`), {
        requestInit: { headers: { Authorization: `Bearer ${first}` } },
      }),
    );
    const kept = (value: unknown) => heard.push(value);
    const failed = (error: Error) => heard.push(error.message);
    try {
      const calls: Array<[string, Record<string, unknown>]> = [
        ...CONTACTS.map((contact): [string, Record<string, unknown>] => [
          "crm.get_contact",
          { id: contact.id },
        ]),
        ["crm.list_contacts", {}],
        ...["leak_error", "leak_throw", "leak_progress", "leak_elicit", "leak_sample"].map(
          (tool): [string, Record<string, unknown>] => [`leaky.${tool}`, {}],
        ),
        ["leaky.contact", { id: "c-1" }],
        ["leaky.contact", { id: "c-1" }],
      ];
      for (const [name, args] of calls) {
        await client.callTool({ name, arguments: args }, undefined, { onprogress: kept }).then(kept, failed);
      }
      await client.readResource({ uri: "leaky://broken/c-2" }).then(kept, failed);
      await client.readResource({ uri: "crm://contacts/c-2" }).then(kept, failed);
      await client
        .getPrompt({ name: "leaky.leak_prompt", arguments: { who: "the team" } })
        .then(kept, failed);
      await client
        .complete({
          ref: { type: "ref/prompt", name: "leaky.leak_prompt" },
          argument: { name: "who", value: "" },
        })
        .then(kept, failed);
    } finally {
      await client.close();
    }
    outputs.push({ where: "gateway client", text: JSON.stringify(heard) });
  }

  /** A run over A2A as the first viewer; its task id. */
  async function a2a(): Promise<string> {
    const client = await new ClientFactory().createFromUrl(`http://127.0.0.1:${port}`);
    const request = SendMessageRequest.fromJSON({
      message: Message.toJSON(
        Message.fromJSON({
          messageId: randomUUID(),
          role: "ROLE_USER",
          parts: [{ data: { contactId: "c-3" } }],
          metadata: { skill: "hello" },
        }),
      ),
    });
    const task = await client.sendMessage(request, {
      serviceParameters: { Authorization: `Bearer ${first}` },
    });
    outputs.push({ where: "a2a SendMessage", text: JSON.stringify(task) });
    return "id" in task ? task.id : "";
  }

  /** The second viewer reads the first one's runs and memory through every read path there is. */
  async function readAsSecond(runIds: string[]): Promise<void> {
    const a2aClient = await new ClientFactory().createFromUrl(`http://127.0.0.1:${port}`);
    const asSecond = { serviceParameters: { Authorization: `Bearer ${second}` } };
    const contexts = (await bucketPlaces(loom.observer))
      .filter((place) => place.where.startsWith("kv loom_memory "))
      .map((place) => place.where.split(" ")[2] ?? "");
    // Reads change nothing: every one of them runs side by side.
    await Promise.all([
      ...runIds.flatMap((runId) => [
        cli(`loom runs get ${runId}`, ["runs", "get", runId, "--json"], second),
        cli(`loom runs trace ${runId}`, ["runs", "trace", runId], second),
        a2aClient
          .getTask({ tenant: "", id: runId, historyLength: 100 }, asSecond)
          .then(
            (value) => JSON.stringify(value),
            (error: Error) => error.message,
          )
          .then((task) => outputs.push({ where: `a2a GetTask ${runId}`, text: task })),
      ]),
      ...contexts.map((context) => cli(`loom memory get ${context}`, ["memory", "get", context], second)),
      cli("loom audit tail", ["audit", "tail", "--json", "-n", "1000"], second),
      cli("loom tools stats", ["tools", "stats"], second),
    ]);
  }

  it("security - no email or SSN of the crm demo reaches any stream, bucket, log or client", async () => {
    const runIds = await workflows();
    await gateway();
    runIds.push(await a2a());
    await readAsSecond(runIds);

    const places = [
      ...outputs,
      ...(await streamPlaces(loom.observer)),
      ...(await bucketPlaces(loom.observer)),
      ...(await logPlaces(loom.logDir)),
    ];
    const leaks = leaksIn(places, SECRETS);
    console.log(`pii scan: ${places.length} places searched, ${leaks.length} leaks`);
    expect(leaks).toEqual([]);
    // The scan read something of every kind: masked output, events, memory, step records, audit
    // (which holds the calls' records too; LOOM_TOOL_CALLS holds feedback only, none here), logs.
    const kinds = ["LOOM_EVENTS", "LOOM_AUDIT", "kv loom_runs", "kv loom_steps", "kv loom_memory", "log "];
    for (const kind of kinds)
      expect(
        places.some((place) => place.where.startsWith(kind)),
        kind,
      ).toBe(true);
    expect(outputs.some((place) => place.text.includes("[masked]"))).toBe(true);
  }, 300_000);
});
