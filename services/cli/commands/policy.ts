import { readFile } from "node:fs/promises";
import { basename, dirname, resolve } from "node:path";
import { Kvm } from "@nats-io/kv";
import { parse as parseYaml } from "yaml";
import { PolicyExplainContract } from "../../../schemas/contracts.ts";
import { ErrorCode } from "../../../schemas/errors.ts";
import {
  type Obligations,
  type PolicyAction,
  type PolicyBundle,
  PolicyBundleSchema,
  type PolicyTestFile,
  PolicyTestFileSchema,
} from "../../../schemas/policy.ts";
import { Buckets, Headers, Subjects } from "../../../schemas/subjects.ts";
// The CLI runs acp-policy's pure evaluator offline: `loom policy test` and `apply` must judge a
// file exactly as the service will.
import { evaluate } from "../../acp-policy/evaluate.ts";
import { compilePolicy, loadPolicyDir, readPolicySources } from "../../acp-policy/policy-loader.ts";
import { ACTIVE_POLICY_KEY } from "../../acp-policy/policy-store.ts";
import { describeIssues, encodePayload, LoomError, request } from "../../kit/index.ts";
import { connectCli } from "../connection.ts";
import { ExitCode } from "../exit-codes.ts";
import { table } from "../render.ts";

const REPO_ROOT = resolve(import.meta.dirname, "../../..");
const SHIPPED_POLICIES = resolve(REPO_ROOT, "infra/policies");

export interface ExplainOptions {
  nats: string;
  token: string | undefined;
  action: PolicyAction;
  tool?: string | undefined;
  workflow?: string | undefined;
  args?: string | undefined;
  json: boolean;
}

/** `loom policy explain`: asks acp-policy how each rule judges a request, without granting anything. */
export async function policyExplainCommand(options: ExplainOptions): Promise<ExitCode> {
  const args = options.args === undefined ? undefined : parseJsonObject(options.args, "--args");
  const nc = await connectCli(options.nats);
  try {
    const explanation = await request(
      nc,
      Subjects.POLICY_EXPLAIN,
      PolicyExplainContract,
      {
        action: options.action,
        resource: {
          ...(options.tool === undefined ? {} : { tool: options.tool }),
          ...(options.workflow === undefined ? {} : { workflow: options.workflow }),
        },
        ...(args === undefined ? {} : { arguments: args }),
      },
      {
        timeoutMs: 5_000,
        headers: {
          [Headers.AUTHORIZATION]: options.token === undefined ? undefined : `Bearer ${options.token}`,
        },
      },
    );
    if (options.json) {
      console.log(JSON.stringify(explanation));
      return ExitCode.OK;
    }
    const { decision } = explanation;
    const roles = decision.principal.roles.join(", ") || "none";
    console.log(`principal  ${decision.principal.id} (roles: ${roles})`);
    console.log(`policy     ${decision.policyVersion}`);
    console.log(
      table(
        ["", "RULE", "EFFECT", "WHY"],
        explanation.rules.map((rule) => [rule.matched ? "✓" : "·", rule.name, rule.effect, rule.why]),
      ),
    );
    console.log(`decision   ${decision.effect} by ${decision.rule}: ${decision.reason}`);
    if (decision.obligations !== undefined)
      console.log(`obligations ${JSON.stringify(decision.obligations)}`);
    return decision.effect === "allow" ? ExitCode.OK : ExitCode.REJECTED;
  } finally {
    await nc.close();
  }
}

/**
 * `loom policy apply <file|dir>`: validates the policy here, then stores it as the next version in
 * KV `loom_policy`; every acp-policy replica watches that key and switches to it. A file that does
 * not validate never reaches the bucket.
 */
export async function policyApplyCommand(path: string, options: { nats: string }): Promise<ExitCode> {
  const sources = await readPolicySources(path);
  const policy = compilePolicy(sources, path);
  const bundle: PolicyBundle = { files: sources, appliedAt: new Date().toISOString() };
  const nc = await connectCli(options.nats);
  try {
    const kv = await new Kvm(nc).create(Buckets.POLICY, { history: 10 });
    const revision = await kv.put(
      ACTIVE_POLICY_KEY,
      encodePayload(PolicyBundleSchema, bundle, "policy bundle"),
    );
    console.log(`applied policy ${policy.version} (${policy.rules.length} rules) as revision ${revision}`);
    console.log(
      "every acp-policy uses it from now on, also after a restart, instead of its LOOM_POLICY_DIR files; apply a folder to go back to it",
    );
    return ExitCode.OK;
  } finally {
    await nc.close();
  }
}

/** `loom policy test <cases.yaml>`: each case's input against the policy; exit 1 on any mismatch. */
export async function policyTestCommand(casesFile: string): Promise<ExitCode> {
  const file = await readCases(casesFile);
  const policyPath = file.policy === undefined ? SHIPPED_POLICIES : resolve(dirname(casesFile), file.policy);
  const policy = await loadPolicyDir(policyPath);
  let failed = 0;
  for (const testCase of file.cases) {
    const { resource } = testCase;
    const verdict = evaluate(
      policy,
      testCase.principal,
      {
        action: testCase.action,
        resource: {
          ...(resource.tool === undefined ? {} : { tool: resource.tool }),
          ...(resource.workflow === undefined ? {} : { workflow: resource.workflow }),
          ...(resource.startedBy === undefined ? {} : { startedBy: resource.startedBy }),
          ...(resource.contextId === undefined ? {} : { contextId: resource.contextId }),
        },
        ...(testCase.arguments === undefined ? {} : { arguments: testCase.arguments }),
      },
      {
        tool: {
          ...(resource.classification === undefined ? {} : { classification: resource.classification }),
          ...(resource.exec === undefined ? {} : { exec: resource.exec }),
          ...(resource.region === undefined ? {} : { region: resource.region }),
        },
        destinationRegion: testCase.principal.attributes.region ?? "eu",
      },
    );
    const problems: string[] = [];
    const { expect } = testCase;
    if (verdict.effect !== expect.effect)
      problems.push(`effect ${verdict.effect}, expected ${expect.effect}`);
    if (expect.rule !== undefined && verdict.rule !== expect.rule) {
      problems.push(`rule ${verdict.rule}, expected ${expect.rule}`);
    }
    for (const [key, wanted] of Object.entries(expect.obligations ?? {}) as [keyof Obligations, string[]][]) {
      const got = verdict.obligations?.[key] ?? [];
      if ([...got].sort().join(",") !== [...wanted].sort().join(",")) {
        problems.push(`obligations.${key} [${got.join(", ")}], expected [${wanted.join(", ")}]`);
      }
    }
    if (problems.length === 0) {
      console.log(`ok    ${testCase.name}`);
    } else {
      failed += 1;
      console.log(`FAIL  ${testCase.name}: ${problems.join("; ")} (${verdict.reason})`);
    }
  }
  console.log(
    `${file.cases.length} cases, ${file.cases.length - failed} passed, ${failed} failed (policy ${policy.version})`,
  );
  return failed === 0 ? ExitCode.OK : ExitCode.FAILED;
}

async function readCases(path: string): Promise<PolicyTestFile> {
  let raw: unknown;
  try {
    raw = parseYaml(await readFile(path, "utf8"));
  } catch (cause) {
    throw new LoomError(ErrorCode.INVALID_INPUT, `${path} is not readable YAML: ${String(cause)}`, { cause });
  }
  const parsed = PolicyTestFileSchema.safeParse(raw);
  if (!parsed.success) {
    throw new LoomError(ErrorCode.INVALID_INPUT, `${basename(path)}: ${describeIssues(parsed.error.issues)}`);
  }
  return parsed.data;
}

function parseJsonObject(text: string, what: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (cause) {
    throw new LoomError(ErrorCode.INVALID_INPUT, `${what} is not valid JSON`, { cause });
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw new LoomError(ErrorCode.INVALID_INPUT, `${what} must be a JSON object`);
  }
  return value as Record<string, unknown>;
}
