import { execFile } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { DeliverPolicy, jetstream, jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { feedbackSubject, Streams, toolCallsSubject } from "../../schemas/subjects.ts";
import { ToolStatsSchema } from "../../schemas/tool-calls.ts";
import { type Stack, waitUntilReady } from "../../services/cli/stack.ts";
import { REPO_ROOT } from "../helpers/loom.ts";
import { type NatsUsersServer, serviceLogs, startNatsWithUsers } from "../helpers/nats-users.ts";
import { tokenFor } from "../helpers/tokens.ts";

const run = promisify(execFile);

/**
 * Call records and feedback with a NATS user per service (infra/nats/nats-server.conf): the
 * submitter reaches feedback and stats only through the orchestrator, and can neither forge nor
 * read the raw records of LOOM_TOOL_CALLS.
 */
describe("security - tool call records under the NATS users of infra/nats", () => {
  let nats: NatsUsersServer;
  let orchestrator: NatsConnection;
  let submitter: NatsConnection;
  let logDir: string;
  const stacks: Stack[] = [];

  async function cli(
    args: string[],
    token: string,
  ): Promise<{ code: number; stdout: string; stderr: string }> {
    try {
      const { stdout, stderr } = await run(
        process.execPath,
        [
          join(REPO_ROOT, "services/cli/bin.ts"),
          ...["--nats", nats.urlAs("submitter"), "--token", token],
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
    nats = await startNatsWithUsers();
    orchestrator = await nats.connectAs("orchestrator");
    submitter = await nats.connectAs("submitter");
    logDir = await mkdtemp(join(tmpdir(), "loom-records-users-"));
    stacks.push(
      ...(await nats.startServices(["acp-policy", "mcp-worker", "llm-agent", "orchestrator"], { logDir })),
    );
    await waitUntilReady(orchestrator, { tools: ["time.get_time", "crm.get_contact"], timeoutMs: 30_000 });
  });
  afterAll(async () => {
    await Promise.all(stacks.map((stack) => stack.stop()));
    await Promise.all([orchestrator?.close(), submitter?.close()]);
    await nats?.[Symbol.asyncDispose]();
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

    expect(await serviceLogs(logDir)).not.toMatch(/Permissions Violation/i);
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
