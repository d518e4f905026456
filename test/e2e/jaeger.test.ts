import { randomBytes } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { eventually } from "../helpers/eventually.ts";
import { type Jaeger, startJaeger } from "../helpers/jaeger.ts";
import { type Loom, startLoom, tokenFor } from "../helpers/loom.ts";
import { OtlpSpanKind, type ReceivedSpan, traceTree } from "../helpers/otlp-receiver.ts";
import { freePort } from "../helpers/ports.ts";

const analyst = tokenFor("alice", "analyst");

const WORKFLOWS: Record<string, string> = {
  "jaeger-parallel.yaml": `
id: jaeger-parallel
steps:
  - id: both
    parallel:
      - { id: now, call: time.get_time, with: { timezone: UTC } }
      - { id: contact, call: crm.get_contact, with: { id: "{% $input.contactId %}" } }
`,
  "jaeger-delegating.yaml": `
id: jaeger-delegating
steps:
  - id: handoff
    delegate: { agent: wf-hello, message: { contactId: "{% $input.contactId %}" } }
`,
};

/** How each exporter Loom offers is pointed at the Jaeger under test. */
const EXPORTERS = [
  {
    exporter: "otlp",
    env: (jaeger: Jaeger) => ({
      OTEL_TRACES_EXPORTER: "otlp",
      OTEL_EXPORTER_OTLP_ENDPOINT: jaeger.otlpEndpoint,
    }),
  },
  {
    exporter: "jaeger",
    env: (jaeger: Jaeger) => ({
      OTEL_TRACES_EXPORTER: "jaeger",
      OTEL_EXPORTER_JAEGER_ENDPOINT: jaeger.thriftEndpoint,
    }),
  },
];

/**
 * What the OpenTelemetry semantic conventions ask of each kind of span Loom makes, checked on every
 * span of a trace: messaging spans on both ends of each NATS hop, MCP client spans in the worker,
 * MCP server spans in the MCP servers (children of the worker's), and the gateway's server spans.
 */
function conventionProblems(spans: readonly ReceivedSpan[]): string[] {
  const byId = new Map(spans.map((span) => [span.spanId, span]));
  const problems: string[] = [];
  const expectThat = (span: ReceivedSpan, ok: boolean, what: string) => {
    if (!ok) problems.push(`${span.service}: ${span.name}: ${what}`);
  };
  for (const span of spans) {
    const [verb, target = ""] = span.name.split(" ");
    const attributes = span.attributes;
    const parent = byId.get(span.parentSpanId ?? "");
    if (verb === "send" || verb === "process") {
      expectThat(span, attributes["messaging.system"] === "nats", "messaging.system");
      expectThat(span, attributes["messaging.destination.name"] === target, "messaging.destination.name");
      expectThat(span, attributes["messaging.operation.type"] === verb, "messaging.operation.type");
    }
    if (verb === "send")
      expectThat(span, span.kind === OtlpSpanKind.CLIENT || span.kind === OtlpSpanKind.PRODUCER, "kind");
    if (verb === "process") {
      // A request is answered (CLIENT, SERVER); a JetStream message is consumed (PRODUCER, CONSUMER).
      expectThat(span, parent?.name === `send ${target}`, `parent is not send ${target}: ${parent?.name}`);
      const answered = parent?.kind === OtlpSpanKind.CLIENT;
      expectThat(span, span.kind === (answered ? OtlpSpanKind.SERVER : OtlpSpanKind.CONSUMER), "kind");
    }
    if (verb === "tools/call") {
      expectThat(span, attributes["mcp.method.name"] === "tools/call", "mcp.method.name");
      if (span.service === "mcp-worker") {
        expectThat(span, span.kind === OtlpSpanKind.CLIENT, "kind");
        expectThat(span, attributes["gen_ai.tool.name"] === target, "gen_ai.tool.name");
        expectThat(span, attributes["gen_ai.operation.name"] === "execute_tool", "gen_ai.operation.name");
      } else if (span.service === "orchestrator") {
        expectThat(span, span.kind === OtlpSpanKind.SERVER, "kind");
        expectThat(span, typeof attributes["mcp.session.id"] === "string", "mcp.session.id");
      } else {
        expectThat(span, span.kind === OtlpSpanKind.SERVER, "kind");
        expectThat(span, attributes["gen_ai.tool.name"] === target, "gen_ai.tool.name");
        expectThat(
          span,
          parent?.service === "mcp-worker" && parent.name === span.name,
          `parent is not the worker's ${span.name}: ${parent?.service}: ${parent?.name}`,
        );
      }
    }
  }
  return problems;
}

const indent = (lines: string[], by: number) => lines.map((line) => `${" ".repeat(by)}${line}`);

/**
 * The spans of one tool call, from the orchestrator's task down to the MCP server: acp-policy
 * decides, then forwards the task to the worker. A run's step goes with its run token on the
 * orchestrator's own subject, a gateway call with the caller's token on the public one.
 */
const toolCall = (server: string, tool: string, subject = "loom.v1.policy.tasks.run") => [
  `orchestrator: send ${subject}`,
  `  acp-policy: process ${subject}`,
  "    acp-policy: decide tools.call",
  "    acp-policy: send loom.v1.agents.mcp-worker.tasks",
  "      mcp-worker: process loom.v1.agents.mcp-worker.tasks",
  `        mcp-worker: tools/call ${tool}`,
  `          mcp-${server}: tools/call ${tool}`,
];
const callStep = (step: string, server: string, tool: string) => [
  `orchestrator: step ${step}`,
  ...indent(toolCall(server, tool), 2),
];
/**
 * A run from its submission on: whoever sent it, the orchestrator drives it after a policy
 * decision. A delegate step's child run is submitted and decided on the orchestrator's own
 * subjects, with its parent's run token.
 */
const submitted = (sender: string, workflow: string, steps: string[]) => {
  const [submit, decide] =
    sender === "orchestrator"
      ? ["loom.v1.runs.delegated", "loom.v1.policy.decide.run"]
      : ["loom.v1.runs.submit", "loom.v1.policy.decide"];
  return [
    `${sender}: send ${submit}`,
    `  orchestrator: process ${submit}`,
    `    orchestrator: run ${workflow}`,
    ...indent(steps, 6),
    `    orchestrator: send ${decide}`,
    `      acp-policy: process ${decide}`,
    "        acp-policy: decide workflow.start",
  ];
};
const submittedByCli = (workflow: string, steps: string[]) => [
  `loom-cli: loom submit ${workflow}`,
  ...indent(submitted("loom-cli", workflow, steps), 2),
];
const HELLO_STEPS = [...callStep("contact", "crm", "get_contact"), ...callStep("now", "time", "get_time")];

describe("e2e - traces in a real Jaeger (v2 all-in-one, default configuration)", () => {
  let jaeger: Jaeger;
  let dir: string;
  beforeAll(async () => {
    jaeger = await startJaeger();
    dir = await mkdtemp(join(tmpdir(), "loom-jaeger-"));
    for (const [name, text] of Object.entries(WORKFLOWS)) await writeFile(join(dir, name), text);
  });
  afterAll(async () => {
    await jaeger?.[Symbol.asyncDispose]();
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  describe.each(EXPORTERS)("OTEL_TRACES_EXPORTER=$exporter", ({ env }) => {
    let loom: Loom;
    let mcpUrl: URL;
    const saved = { ...process.env };
    beforeAll(async () => {
      // The services and the CLI, all started from this process, export to this Jaeger.
      Object.assign(process.env, env(jaeger), {
        OTEL_BSP_SCHEDULE_DELAY: "100",
        LOOM_JAEGER_UI: jaeger.uiUrl,
      });
      const port = await freePort();
      mcpUrl = new URL(`http://127.0.0.1:${port}/mcp`);
      loom = await startLoom({ env: { LOOM_A2A_PORT: String(port) } });
    });
    afterAll(async () => {
      await loom?.[Symbol.asyncDispose]();
      process.env = saved;
    });

    async function submit(workflow: string, contactId: string): Promise<{ runId: string; traceId: string }> {
      const { code, stdout, stderr } = await loom.cli(
        ["submit", workflow, "--input", JSON.stringify({ contactId }), "--watch", "--json"],
        { token: analyst },
      );
      expect(code, stdout + stderr).toBe(0);
      return JSON.parse(stdout);
    }

    /**
     * Reads the trace back from Jaeger until it has the expected shape, then checks it is one tree
     * of that shape, that every span follows the conventions, and that the web UI's API shows the
     * same spans, services and parent links.
     */
    async function expectTraceInJaeger(traceId: string, tree: string[]): Promise<ReceivedSpan[]> {
      const spans = await eventually(
        () => jaeger.spans(traceId),
        (found) => found.length >= tree.length,
        30_000,
      );
      expect(spans.every((span) => span.traceId === traceId)).toBe(true);
      expect(traceTree(spans, traceId)).toBe(tree.join("\n"));
      expect(conventionProblems(spans)).toEqual([]);

      const ui = await jaeger.uiTrace(traceId);
      const uiSpans = (ui?.spans ?? []).map((span) => ({
        service: ui?.processes[span.processID]?.serviceName,
        name: span.operationName,
        spanId: span.spanID,
        parentSpanId: span.references.find((reference) => reference.refType === "CHILD_OF")?.spanID,
      }));
      const v3Spans = spans.map(({ service, name, spanId, parentSpanId }) => ({
        service,
        name,
        spanId,
        parentSpanId,
      }));
      const bySpanId = (a: { spanId: string }, b: { spanId: string }) => a.spanId.localeCompare(b.spanId);
      expect(uiSpans.sort(bySpanId)).toEqual(v3Spans.sort(bySpanId));
      return spans;
    }

    it("plain - a run of hello is one trace across the CLI, every service and both MCP servers", async () => {
      const { runId, traceId } = await submit("hello", "c-1");
      const spans = await expectTraceInJaeger(traceId, submittedByCli("hello", HELLO_STEPS));
      expect(spans.find((span) => span.name === "step contact")?.attributes).toMatchObject({
        "loom.run.id": runId,
        "loom.step.id": "contact",
      });
    });

    it("parallel - both branches of a parallel step hang under the one run", async () => {
      const { traceId } = await submit(join(dir, "jaeger-parallel.yaml"), "c-2");
      await expectTraceInJaeger(traceId, submittedByCli("jaeger-parallel", HELLO_STEPS));
    });

    it("delegate - a run handed to another workflow (wf-hello) stays in the caller's trace", async () => {
      const { traceId } = await submit(join(dir, "jaeger-delegating.yaml"), "c-4");
      await expectTraceInJaeger(
        traceId,
        submittedByCli("jaeger-delegating", [
          "orchestrator: step handoff",
          "  orchestrator: send loom.v1.agents.wf-hello.tasks",
          "    orchestrator: process loom.v1.agents.wf-hello.tasks",
          ...indent(submitted("orchestrator", "hello", HELLO_STEPS), 6),
        ]),
      );
    });

    it("gateway - an MCP client's tools/call joins the client's trace from its _meta traceparent", async () => {
      const traceId = randomBytes(16).toString("hex");
      const clientSpanId = randomBytes(8).toString("hex");
      const client = new Client({ name: "jaeger-test", version: "1.0.0" });
      await client.connect(
        new StreamableHTTPClientTransport(mcpUrl, {
          requestInit: { headers: { Authorization: `Bearer ${analyst}` } },
        }),
      );
      try {
        const result = await client.callTool({
          name: "crm.get_contact",
          arguments: { id: "c-1" },
          _meta: { traceparent: `00-${traceId}-${clientSpanId}-01` },
        });
        expect(result.isError).toBeFalsy();
      } finally {
        await client.close();
      }
      const spans = await expectTraceInJaeger(traceId, [
        "orchestrator: tools/call crm.get_contact",
        ...indent(toolCall("crm", "get_contact", "loom.v1.policy.tasks"), 2),
      ]);
      const gateway = spans.find((span) => span.name === "tools/call crm.get_contact");
      expect(gateway?.parentSpanId).toBe(clientSpanId);
    });
  });
});
