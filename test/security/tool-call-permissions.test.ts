import { execFile } from "node:child_process";
import { randomUUID } from "node:crypto";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { DeliverPolicy, jetstream, jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { feedbackSubject, Streams, toolCallsSubject } from "../../schemas/subjects.ts";
import { ToolStatsSchema } from "../../schemas/tool-calls.ts";
import { type Stack, startStack, waitUntilReady } from "../../services/cli/stack.ts";
import { REPO_ROOT } from "../helpers/loom.ts";
import { connectTo, type NatsServer, startNatsServer } from "../helpers/nats-server.ts";
import { TEST_AUTH_ENV, tokenFor } from "../helpers/tokens.ts";

const run = promisify(execFile);
const CONF = join(REPO_ROOT, "infra/nats/nats-server.conf");
// nats-server parses a variable's value as config: a password must start with a letter.
const password = () => `pw${randomUUID().replaceAll("-", "")}`;
const passwords = {
  LOOM_NATS_ORCHESTRATOR_PASSWORD: password(),
  LOOM_NATS_ACP_POLICY_PASSWORD: password(),
  LOOM_NATS_MCP_WORKER_PASSWORD: password(),
  LOOM_NATS_SUBMITTER_PASSWORD: password(),
  LOOM_NATS_POLICY_ADMIN_PASSWORD: password(),
};

/**
 * Call records and feedback with a NATS user per service (infra/nats/nats-server.conf): the
 * submitter reaches feedback and stats only through the orchestrator, and can neither forge nor
 * read the raw records of LOOM_TOOL_CALLS.
 */
describe("security - tool call records under the NATS users of infra/nats", () => {
  let ns: NatsServer;
  let orchestrator: NatsConnection;
  let submitter: NatsConnection;
  let logDir: string;
  const stacks: Stack[] = [];
  const as = (user: string, secret: string) => ns.url.replace("nats://", `nats://${user}:${secret}@`);

  async function cli(
    args: string[],
    token: string,
  ): Promise<{ code: number; stdout: string; stderr: string }> {
    try {
      const { stdout, stderr } = await run(
        process.execPath,
        [
          join(REPO_ROOT, "services/cli/bin.ts"),
          ...["--nats", as("submitter", passwords.LOOM_NATS_SUBMITTER_PASSWORD), "--token", token],
          ...args,
        ],
        { timeout: 30_000, cwd: REPO_ROOT, env: { ...process.env, LOOM_TOKEN: "" } },
      );
      return { code: 0, stdout, stderr };
    } catch (error) {
      const failed = error as { code?: number; stdout?: string; stderr?: string };
      return { code: failed.code ?? -1, stdout: failed.stdout ?? "", stderr: failed.stderr ?? "" };
    }
  }

  beforeAll(async () => {
    // The server reads the passwords from its environment, which it inherits from this process.
    Object.assign(process.env, passwords);
    ns = await startNatsServer({ args: ["-c", CONF] });
    orchestrator = await connectTo(ns.url, {
      user: "orchestrator",
      pass: passwords.LOOM_NATS_ORCHESTRATOR_PASSWORD,
    });
    submitter = await connectTo(ns.url, { user: "submitter", pass: passwords.LOOM_NATS_SUBMITTER_PASSWORD });
    logDir = await mkdtemp(join(tmpdir(), "loom-records-users-"));
    for (const [service, secret] of [
      ["acp-policy", passwords.LOOM_NATS_ACP_POLICY_PASSWORD],
      ["mcp-worker", passwords.LOOM_NATS_MCP_WORKER_PASSWORD],
      ["orchestrator", passwords.LOOM_NATS_ORCHESTRATOR_PASSWORD],
    ] as const) {
      stacks.push(
        await startStack({
          natsUrl: as(service, secret),
          logDir,
          services: [service],
          env: { ...TEST_AUTH_ENV, LOOM_HTTP_PORT: "0" },
        }),
      );
    }
    await waitUntilReady(orchestrator, { tools: ["time.get_time", "crm.get_contact"], timeoutMs: 30_000 });
  });
  afterAll(async () => {
    await Promise.all(stacks.map((stack) => stack.stop()));
    await Promise.all([orchestrator?.close(), submitter?.close()]);
    await ns?.[Symbol.asyncDispose]();
    await rm(logDir, { recursive: true, force: true });
  });

  it("nats - the submitter user runs a workflow, gives feedback and reads stats; no permission is violated", async () => {
    const token = tokenFor("ann", "analyst");
    const submitted = await cli(
      ["submit", "hello", "--input", '{"contactId":"c-1"}', "--watch", "--json"],
      token,
    );
    expect(submitted.code, submitted.stderr).toBe(0);
    const { runId } = JSON.parse(submitted.stdout.trim().split("\n").at(-1) ?? "{}");

    const feedback = await cli(["feedback", runId, "contact", "--ok"], token);
    expect(feedback.code, feedback.stderr).toBe(0);
    expect(feedback.stdout).toContain(`feedback ok on ${runId}/contact: crm.get_contact (version 1.0.0)`);

    const stats = await cli(["tools", "stats", "--json"], token);
    expect(stats.code, stats.stderr).toBe(0);
    const { rows } = ToolStatsSchema.parse(JSON.parse(stats.stdout));
    expect(rows.find((row) => row.server === "crm" && row.target === "get_contact")).toMatchObject({
      serverVersion: "1.0.0",
      calls: 1,
      errors: 0,
      feedback: { ok: 1, bad: 0 },
    });
    expect(rows.find((row) => row.server === "time" && row.target === "get_time")?.calls).toBe(1);

    const logs = await Promise.all(
      (await readdir(logDir)).map((name) => readFile(join(logDir, name), "utf8")),
    );
    expect(logs.join("\n")).not.toMatch(/Permissions Violation/i);
  });

  it("nats - a submitter cannot forge call records or feedback into LOOM_TOOL_CALLS", async () => {
    const jsm = await jetstreamManager(orchestrator);
    const before = (await jsm.streams.info(Streams.TOOL_CALLS)).state.messages;
    for (const subject of [toolCallsSubject("crm", "forged-run"), feedbackSubject("forged-run")]) {
      const refused = await jetstream(submitter, { timeout: 1_000 })
        .publish(subject, "{}")
        .then(
          () => false,
          () => true,
        );
      expect(refused, subject).toBe(true);
    }
    expect((await jsm.streams.info(Streams.TOOL_CALLS)).state.messages).toBe(before);
  });

  it("nats - a submitter cannot read the raw records (they name runs and steps)", async () => {
    const refused = await jetstream(submitter, { timeout: 1_000 })
      .consumers.get(Streams.TOOL_CALLS, { deliver_policy: DeliverPolicy.All })
      .then(
        () => false,
        () => true,
      );
    expect(refused).toBe(true);
  });
});
