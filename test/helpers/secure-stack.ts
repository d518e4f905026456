import { randomUUID } from "node:crypto";
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { NatsConnection } from "@nats-io/transport-node";
import { Role } from "../../schemas/a2a.ts";
import { AgentTaskContract, PolicyDecideContract } from "../../schemas/contracts.ts";
import type { PolicyDecision } from "../../schemas/policy.ts";
import { agentTasksSubject, Headers, MCP_WORKER_AGENT, Subjects } from "../../schemas/subjects.ts";
import { type Stack, waitUntilReady } from "../../services/cli/stack.ts";
import { request } from "../../services/kit/index.ts";
import { timeAndServerConfig } from "./ledger.ts";
import { REPO_ROOT } from "./loom.ts";
import { type NatsUsersServer, startNatsWithUsers } from "./nats-users.ts";
import { tokenFor } from "./tokens.ts";

/** Analysts call and read `gauges`; admins may do anything there. */
const GAUGES_POLICY = `version: "gauges-secure"
rules:
  - name: analysts-use-gauges
    effect: allow
    roles: [analyst]
    actions: [tools.call, resources.read]
    tools: ["gauges.*"]
`;

/**
 * The whole stack with a NATS user per service (infra/nats/nats-server.conf) and the counting
 * `gauges` MCP server, whose every execution is a line in a file: what the attacks count.
 */
export interface SecureStack extends AsyncDisposable {
  nats: NatsUsersServer;
  stacks: Stack[];
  logDir: string;
  /** How many times `gauges` executed a tool call or a read. */
  executions(): Promise<number>;
  as(
    user: "orchestrator" | "mcp-worker" | "llm-agent" | "submitter" | "policy-admin" | "acp-policy",
  ): Promise<NatsConnection>;
  /** A decision for `gauges.read_gauge {id}` in run `runId`, asked with an analyst's own token. */
  decideRead(nc: NatsConnection, runId: string, id: string, attempt?: number): Promise<PolicyDecision>;
  /**
   * Sends the worker a read_gauge task with `grant` for `attempt`, as acp-policy's user (the one
   * that forwards granted tasks to it); resolves to the error code or "ok".
   */
  sendTask(task: {
    runId: string;
    id: string;
    attempt: number;
    grant?: string;
    part?: unknown;
  }): Promise<string>;
}

export async function startSecureStack(): Promise<SecureStack> {
  const dir = await mkdtemp(join(tmpdir(), "loom-secure-"));
  const countFile = join(dir, "invocations.log");
  await writeFile(countFile, "");
  const policies = join(dir, "policies");
  await mkdir(policies);
  await copyFile(join(REPO_ROOT, "infra/policies/default.yaml"), join(policies, "default.yaml"));
  await writeFile(join(policies, "gauges.yaml"), GAUGES_POLICY);
  const serversFile = join(dir, "servers.yaml");
  await writeFile(
    serversFile,
    timeAndServerConfig({
      name: "gauges",
      script: "test/helpers/counting-mcp-server.ts",
      env: { COUNT_FILE: countFile },
      governance: "{ owner: test, data_classification: internal, access_level: read }",
    }),
  );
  const nats = await startNatsWithUsers();
  const logDir = join(dir, "logs");
  const connections: NatsConnection[] = [];
  const stacks = await nats.startServices(["acp-policy", "mcp-worker", "llm-agent", "orchestrator"], {
    logDir,
    env: { LOOM_MCP_SERVERS: serversFile, LOOM_POLICY_DIR: policies },
  });
  const admin = await nats.connectAs("orchestrator");
  connections.push(admin);
  const forwarder = await nats.connectAs("acp-policy");
  connections.push(forwarder);
  await waitUntilReady(admin, { tools: ["time.get_time", "gauges.read_gauge"], timeoutMs: 30_000 });
  return {
    nats,
    stacks,
    logDir,
    async executions() {
      return (await readFile(countFile, "utf8")).split("\n").filter(Boolean).length;
    },
    async as(user) {
      const nc = await nats.connectAs(user);
      connections.push(nc);
      return nc;
    },
    decideRead: (nc, runId, id, attempt = 1) =>
      request(
        nc,
        Subjects.POLICY_DECIDE,
        PolicyDecideContract,
        {
          action: "tools.call",
          resource: { tool: "gauges.read_gauge" },
          arguments: { id },
          runId,
          stepId: "gauge",
          attempt,
        },
        { timeoutMs: 10_000, headers: { [Headers.AUTHORIZATION]: `Bearer ${tokenFor("ann", "analyst")}` } },
      ),
    async sendTask(task) {
      try {
        await request(
          forwarder,
          agentTasksSubject(MCP_WORKER_AGENT),
          AgentTaskContract,
          {
            messageId: randomUUID(),
            role: Role.USER,
            taskId: `${task.runId}:gauge:${task.attempt}`,
            contextId: task.runId,
            parts: [
              (task.part as never) ?? {
                data: { server: "gauges", tool: "read_gauge", arguments: { id: task.id } },
              },
            ],
            metadata: {
              runId: task.runId,
              stepId: "gauge",
              attempt: task.attempt,
              ...(task.grant === undefined ? {} : { grant: task.grant }),
            },
          },
          { timeoutMs: 15_000 },
        );
        return "ok";
      } catch (error) {
        return (error as { code?: string }).code ?? String(error);
      }
    },
    async [Symbol.asyncDispose]() {
      await Promise.all(stacks.map((stack) => stack.stop()));
      await Promise.all(connections.map((nc) => nc.close()));
      await nats[Symbol.asyncDispose]();
      if (process.env.KEEP_LOGS === undefined) await rm(dir, { recursive: true, force: true });
    },
  };
}
