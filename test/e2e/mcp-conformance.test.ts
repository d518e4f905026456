import { readFileSync } from "node:fs";
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
import { REPO_ROOT, tokenFor } from "../helpers/loom.ts";

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
