import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { eventually } from "../helpers/eventually.ts";
import { type Loom, startLoom, tokenFor } from "../helpers/loom.ts";
import {
  type OtlpReceiver,
  OtlpSpanKind,
  type ReceivedSpan,
  startOtlpReceiver,
  traceTree,
} from "../helpers/otlp-receiver.ts";

const analyst = tokenFor("alice", "analyst");
const manager = tokenFor("maria", "analyst", "manager");
const JAEGER_UI = "http://jaeger.example:16686";

describe("e2e - observability: one trace per run, metrics, health, logs", () => {
  let loom: Loom;
  let otlp: OtlpReceiver;
  const ports = new Map<string, number>();
  const saved = { ...process.env };

  beforeAll(async () => {
    otlp = await startOtlpReceiver();
    // The services and the CLI, all started from this process, export to the test's receiver.
    Object.assign(process.env, {
      OTEL_TRACES_EXPORTER: "otlp",
      OTEL_EXPORTER_OTLP_ENDPOINT: otlp.endpoint,
      OTEL_BSP_SCHEDULE_DELAY: "100",
      LOOM_HTTP_PORT: "0",
      LOOM_JAEGER_UI: JAEGER_UI,
    });
    loom = await startLoom();
    for (const service of loom.stack.services) {
      const log = await readFile(service.logFile, "utf8");
      const line = log.split("\n").find((text) => text.includes("serving metrics and health"));
      ports.set(service.name, JSON.parse(line ?? "{}").port);
    }
  });
  afterAll(async () => {
    await loom?.[Symbol.asyncDispose]();
    await otlp?.[Symbol.asyncDispose]();
    process.env = saved;
  });

  const get = async (service: string, path: string) => {
    const response = await fetch(`http://127.0.0.1:${ports.get(service)}${path}`);
    return { status: response.status, text: await response.text() };
  };

  async function submitHello(contactId: string): Promise<{ runId: string; traceId: string }> {
    const { code, stdout } = await loom.cli(
      ["submit", "hello", "--input", JSON.stringify({ contactId }), "--watch", "--json"],
      { token: analyst },
    );
    expect(code).toBe(0);
    return JSON.parse(stdout);
  }

  const spansOf = (traceId: string) => otlp.spans.filter((span) => span.traceId === traceId);
  const only = (spans: ReceivedSpan[], service: string, name: string) => {
    const found = spans.filter((span) => span.service === service && span.name === name);
    expect(found, `${service}: ${name}`).toHaveLength(1);
    return found[0] as ReceivedSpan;
  };

  it("trace - a run across service processes is one trace whose tree matches the workflow", async () => {
    const { traceId } = await submitHello("c-1");
    const tree = await eventually(
      () => traceTree(otlp.spans, traceId),
      (text) => text.split("\n").length >= 23,
    );
    expect(tree).toBe(
      [
        "loom-cli: loom submit hello",
        "  loom-cli: send loom.v1.runs.submit",
        "    orchestrator: process loom.v1.runs.submit",
        "      orchestrator: run hello",
        "        orchestrator: step contact",
        "          orchestrator: send loom.v1.policy.tasks.run",
        "            acp-policy: process loom.v1.policy.tasks.run",
        "              acp-policy: decide tools.call",
        "              acp-policy: send loom.v1.agents.mcp-worker.tasks",
        "                mcp-worker: process loom.v1.agents.mcp-worker.tasks",
        "                  mcp-worker: tools/call get_contact",
        "                    mcp-crm: tools/call get_contact",
        "        orchestrator: step now",
        "          orchestrator: send loom.v1.policy.tasks.run",
        "            acp-policy: process loom.v1.policy.tasks.run",
        "              acp-policy: decide tools.call",
        "              acp-policy: send loom.v1.agents.mcp-worker.tasks",
        "                mcp-worker: process loom.v1.agents.mcp-worker.tasks",
        "                  mcp-worker: tools/call get_time",
        "                    mcp-time: tools/call get_time",
        "      orchestrator: send loom.v1.policy.decide",
        "        acp-policy: process loom.v1.policy.decide",
        "          acp-policy: decide workflow.start",
      ].join("\n"),
    );
    expect(otlp.rejected).toEqual([]);
  });

  it("trace - spans carry the MCP, GenAI, messaging and Loom semantic-convention attributes", async () => {
    const { runId, traceId } = await submitHello("c-2");
    const spans = await eventually(
      () => spansOf(traceId),
      (found) => found.some((span) => span.service === "mcp-crm"),
    );
    const client = only(spans, "mcp-worker", "tools/call get_contact");
    expect(client.kind).toBe(OtlpSpanKind.CLIENT);
    expect(client.attributes).toMatchObject({
      "mcp.method.name": "tools/call",
      "gen_ai.tool.name": "get_contact",
      "gen_ai.operation.name": "execute_tool",
      "loom.run.id": runId,
      "loom.step.id": "contact",
    });
    const server = only(spans, "mcp-crm", "tools/call get_contact");
    expect(server.kind).toBe(OtlpSpanKind.SERVER);
    expect(server.parentSpanId).toBe(client.spanId);
    expect(server.attributes).toMatchObject({
      "mcp.method.name": "tools/call",
      "gen_ai.tool.name": "get_contact",
    });

    // A step's task goes to acp-policy, which forwards it to the worker once it has decided.
    const send = spans.find((span) => span.name === "send loom.v1.policy.tasks.run");
    expect(send?.kind).toBe(OtlpSpanKind.CLIENT);
    expect(send?.attributes).toMatchObject({
      "messaging.system": "nats",
      "messaging.destination.name": "loom.v1.policy.tasks.run",
      "messaging.operation.type": "send",
    });
    const decisions = spans.filter((span) => span.name === "decide tools.call");
    expect(decisions.map((span) => span.attributes["loom.policy.rule"]).sort()).toEqual([
      "analysts-read-crm",
      "everyone-reads-time",
    ]);
    for (const decision of decisions) expect(decision.attributes["loom.policy.effect"]).toBe("allow");
    expect(only(spans, "orchestrator", "step contact").attributes).toMatchObject({
      "loom.run.id": runId,
      "loom.step.id": "contact",
    });
  });

  it("trace - a tool error marks the MCP spans with error.type", async () => {
    const { code, stdout } = await loom.cli(
      ["submit", "hello", "--input", '{"contactId":"c-404"}', "--watch", "--json"],
      { token: analyst },
    );
    expect(code).toBe(1);
    const { traceId } = JSON.parse(stdout);
    const spans = await eventually(
      () => spansOf(traceId).filter((span) => span.name === "tools/call get_contact"),
      (found) => found.length >= 2,
    );
    for (const span of spans) {
      expect(span.statusCode).toBe(2);
      expect(span.attributes["error.type"]).toBe("tool_error");
    }
  });

  it("trace - a run continued by another request (an approval) stays in its trace, linked to the trigger", async () => {
    const file = join(loom.logDir, "obs-approve.yaml");
    await writeFile(
      file,
      [
        "id: obs-approve",
        "version: 1",
        "steps:",
        "  - id: ask",
        '    approval: { prompt: "Go?", roles: [manager] }',
        "  - id: now",
        "    call: time.get_time",
        "    with: { timezone: UTC }",
      ].join("\n"),
    );
    const submitted = await loom.cli(["submit", file, "--json"], { token: manager });
    expect(submitted.code).toBe(0);
    const { runId, traceId } = JSON.parse(submitted.stdout);
    await eventually(
      async () =>
        JSON.parse((await loom.cli(["runs", "get", runId, "--json"], { token: manager })).stdout).state,
      (state) => state === "input-required",
    );
    const answered = await loom.cli(["runs", "input", runId, "--approve", "--json"], { token: manager });
    expect(answered.code).toBe(0);
    const runSpans = await eventually(
      () => spansOf(traceId).filter((span) => span.name === "run obs-approve"),
      (found) => found.length === 2,
    );
    const resumed = runSpans.find((span) => span.attributes["loom.run.resumed"] === true);
    expect(resumed?.links.length).toBeGreaterThanOrEqual(1);
    const trigger = resumed?.links.find((link) => link.traceId !== traceId);
    expect(trigger).toBeDefined();
    await eventually(
      () =>
        spansOf(traceId).some((span) => span.service === "mcp-time" && span.name === "tools/call get_time"),
      Boolean,
    );
  });

  it("trace - loom runs trace draws the run as a waterfall and links to Jaeger", async () => {
    const { runId, traceId } = await submitHello("c-1");
    const { stdout } = await eventually(
      () => loom.cli(["runs", "trace", runId], { token: analyst }),
      (result) =>
        result.stdout.includes("tools/call get_contact") && result.stdout.includes("decide workflow.start"),
    );
    expect(stdout).toContain(`trace  ${traceId}`);
    expect(stdout).toContain(`jaeger ${JAEGER_UI}/trace/${traceId}`);
    // The CLI's own spans go to its exporter only (a submitter may not publish spans on the bus):
    // the run's tree in LOOM_SPANS starts where the orchestrator took the submission.
    expect(stdout).not.toContain("loom-cli");
    expect(stdout).toMatch(/^process loom\.v1\.runs\.submit\s+orchestrator\s+[\d.]+\s+█+/m);
    // Under the step: its task sent to acp-policy, which forwarded it to the worker.
    expect(stdout).toMatch(/^ {14}tools\/call get_contact\s+mcp-worker\s+[\d.]+\s+ *█+/m);
  });

  it("metrics - each service's /metrics counts what the runs did", async () => {
    const worker = (await get("mcp-worker", "/metrics")).text;
    expect(worker).toMatch(
      /^loom_tool_calls_total\{server="time",tool="get_time",outcome="ok",server_version="default"\} [1-9]/m,
    );
    expect(worker).toMatch(
      /^loom_tool_calls_total\{server="crm",tool="get_contact",outcome="ok",server_version="default"\} [1-9]/m,
    );
    expect(worker).toMatch(
      /^loom_tool_calls_total\{server="crm",tool="get_contact",outcome="tool_error",server_version="default"\} [1-9]/m,
    );
    expect(worker).toMatch(
      /^loom_tool_call_duration_seconds_count\{server="time",tool="get_time",outcome="ok",server_version="default"\} [1-9]/m,
    );
    expect(worker).toMatch(
      /^mcp_client_operation_duration_seconds_bucket\{le="\+Inf",mcp_method_name="tools\/call",gen_ai_tool_name="get_time",gen_ai_operation_name="execute_tool",error_type=""\} [1-9]/m,
    );
    expect(worker).toMatch(/^loom_nats_connection_events_total\{event="connect"\} 1$/m);

    const policy = (await get("acp-policy", "/metrics")).text;
    expect(policy).toMatch(
      /^loom_policy_decisions_total\{action="tools.call",effect="allow",rule="analysts-read-crm"\} [1-9]/m,
    );
    expect(policy).toMatch(
      /^loom_policy_decisions_total\{action="workflow.start",effect="allow",rule="staff-start-workflows"\} [1-9]/m,
    );
    expect(policy).not.toContain("loom_tool_calls_total");

    const orchestrator = (await get("orchestrator", "/metrics")).text;
    expect(orchestrator).toMatch(/^loom_runs_total\{state="submitted"\} [1-9]/m);
    expect(orchestrator).toMatch(/^loom_runs_total\{state="completed"\} [1-9]/m);
    expect(orchestrator).toMatch(/^loom_runs_total\{state="failed"\} [1-9]/m);
    expect(orchestrator).toMatch(/^loom_runs_active 0$/m);
    expect(orchestrator).toMatch(/^process_cpu_user_seconds_total /m);
  });

  it("logs - lines carry the run's trace id, and no token or personal field reaches them", async () => {
    const { traceId } = await submitHello("c-1");
    // The services a run of hello passes through; the llm agent takes no part in it.
    const hops = new Set(["orchestrator", "acp-policy", "mcp-worker"]);
    await eventually(
      () =>
        Promise.all(
          loom.stack.services
            .filter((service) => hops.has(service.name))
            .map((service) => readFile(service.logFile, "utf8")),
        ),
      (texts) =>
        texts.length === hops.size && texts.every((text) => text.includes(`"trace_id":"${traceId}"`)),
    );
    const logs = await Promise.all(loom.stack.services.map((service) => readFile(service.logFile, "utf8")));
    for (const text of logs) {
      expect(text).not.toContain(analyst);
      expect(text).not.toContain(manager);
      expect(text).not.toContain("ada@"); // the demo contact's email
    }
  });

  it("health - /healthz and /readyz answer, and /readyz follows the NATS connection", async () => {
    for (const service of ["orchestrator", "acp-policy", "mcp-worker"]) {
      expect(await get(service, "/healthz")).toEqual({ status: 200, text: "ok\n" });
      expect(await get(service, "/readyz")).toEqual({ status: 200, text: "ready\n" });
    }
    await loom.nats.stop();
    const down = await eventually(
      () => get("mcp-worker", "/readyz"),
      (response) => response.status === 503,
    );
    expect(down.text).toBe("not ready: not connected to NATS\n");
    await loom.nats.restart();
    await eventually(
      () => get("mcp-worker", "/readyz"),
      (response) => response.status === 200,
    );
    expect((await get("mcp-worker", "/metrics")).text).toMatch(
      /^loom_nats_connection_events_total\{event="reconnect"\} 1$/m,
    );
  });
});
