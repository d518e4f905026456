import { readFileSync } from "node:fs";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { startBearerForwarder } from "../helpers/bearer-forwarder.ts";
import {
  type FixtureServer,
  runConformance,
  type ScenarioResult,
  startFixtureHttp,
} from "../helpers/conformance.ts";
import { type Loom, REPO_ROOT, startLoom, tokenFor } from "../helpers/loom.ts";
import { freePort } from "../helpers/ports.ts";

/** Expected failures per target: scenario -> why it fails. Every entry must give a reason. */
const BaselineSchema = z.object({
  direct: z.record(z.string(), z.string().min(20)),
  gateway: z.record(z.string(), z.string().min(20)).default({}),
});
const baseline = BaselineSchema.parse(
  JSON.parse(readFileSync(join(REPO_ROOT, "test/conformance/baseline.json"), "utf8")),
);

/** Scenarios that break the baseline, either way; empty when the baseline tells the truth. */
function compare(results: Map<string, ScenarioResult>, expected: Record<string, string>) {
  const unexpectedFailures = [...results]
    .filter(([scenario, result]) => !result.passed && !(scenario in expected))
    .map(([scenario, result]) => `${scenario}: ${result.problems.join("; ")}`);
  const nowPassing = Object.keys(expected).filter((scenario) => results.get(scenario)?.passed === true);
  const notInSuite = Object.keys(expected).filter((scenario) => !results.has(scenario));
  return { unexpectedFailures, nowPassing, notInSuite };
}

const verdicts = (results: Map<string, ScenarioResult>) =>
  Object.fromEntries([...results].map(([scenario, result]) => [scenario, result.passed]));

describe("e2e - MCP conformance suite (@modelcontextprotocol/conformance server)", () => {
  let fixture: FixtureServer;
  let direct: Map<string, ScenarioResult>;
  beforeAll(async () => {
    fixture = await startFixtureHttp();
    direct = await runConformance(fixture.url);
  });
  afterAll(async () => {
    await fixture?.[Symbol.asyncDispose]();
  });

  it("conformance - the fixture alone, over Streamable HTTP, fails only the scenarios its baseline names", () => {
    expect(direct.size).toBeGreaterThanOrEqual(30);
    expect(compare(direct, baseline.direct)).toEqual({
      unexpectedFailures: [],
      nowPassing: [],
      notInSuite: [],
    });
  });

  it("conformance - the bearer forwarder the gateway run needs changes no scenario's verdict", async () => {
    await using forwarder = await startBearerForwarder(fixture.url, tokenFor("conformance", "tester"));
    expect(verdicts(await runConformance(forwarder.url))).toEqual(verdicts(direct));
  });
});

/** The fixture behind the worker over stdio, exposed under its own names as the suite calls them. */
const SERVERS = `
servers:
  - name: conformance
    transport: { type: stdio, command: node, args: ["${join(REPO_ROOT, "services/mcp-servers/conformance.ts")}"] }
    timeout: 10s
    governance: { owner: mcp-conformance, data_classification: public, access_level: read }
    gateway: { prefix: "" }
`;

const POLICY = `
version: "conformance"
rules:
  - name: conformance-suite-uses-the-fixture
    effect: allow
    roles: [conformance]
    actions: [tools.call, resources.read, prompts.get]
    tools: ["conformance.*"]
  - name: the-fixture-samples-the-suite-client
    description: The fixture may ask the suite's own client for a completion during its calls.
    effect: allow
    roles: [conformance]
    actions: [llm.sample]
    tools: [conformance]
`;

describe("e2e - MCP conformance suite through the gateway (/mcp), fronting the fixture", () => {
  let loom: Loom;
  let dir: string;
  let gatewayUrl: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "loom-conformance-"));
    await writeFile(join(dir, "servers.yaml"), SERVERS);
    await mkdir(join(dir, "policies"));
    await writeFile(join(dir, "policies", "conformance.yaml"), POLICY);
    const port = await freePort();
    gatewayUrl = `http://127.0.0.1:${port}/mcp`;
    loom = await startLoom({
      env: {
        LOOM_MCP_SERVERS: join(dir, "servers.yaml"),
        LOOM_POLICY_DIR: join(dir, "policies"),
        LOOM_A2A_PORT: String(port),
      },
      tools: ["conformance.test_simple_text"],
    });
  });
  afterAll(async () => {
    await loom?.[Symbol.asyncDispose]();
    await rm(dir, { recursive: true, force: true });
  });

  it("conformance - the gateway fails only the scenarios its baseline names", async () => {
    await using forwarder = await startBearerForwarder(gatewayUrl, tokenFor("suite", "conformance"));
    const results = await runConformance(forwarder.url);
    expect(results.size).toBeGreaterThanOrEqual(30);
    expect(compare(results, baseline.gateway)).toEqual({
      unexpectedFailures: [],
      nowPassing: [],
      notInSuite: [],
    });
  });
});
