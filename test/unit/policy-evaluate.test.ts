import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { ErrorCode } from "../../schemas/errors.ts";
import {
  DEFAULT_DENY_RULE,
  type PolicyDecisionRequest,
  PolicyEffect,
  type Principal,
} from "../../schemas/policy.ts";
import { evaluate, everyMask } from "../../services/acp-policy/evaluate.ts";
import {
  type ActivePolicy,
  loadPolicyDir,
  parsePolicyFile,
} from "../../services/acp-policy/policy-loader.ts";
import { LoomError } from "../../services/kit/errors.ts";

const SHIPPED_POLICIES = join(import.meta.dirname, "../../infra/policies");

const analyst: Principal = { id: "ann", roles: ["analyst"], attributes: {} };
const contractor: Principal = { id: "carl", roles: ["contractor"], attributes: {} };
const admin: Principal = { id: "ada", roles: ["admin"], attributes: {} };
const viewer: Principal = { id: "vic", roles: ["viewer"], attributes: {} };

const callTool = (tool: string): PolicyDecisionRequest => ({ action: "tools.call", resource: { tool } });
const startWorkflow = (workflow: string): PolicyDecisionRequest => ({
  action: "workflow.start",
  resource: { workflow },
});

/** A policy made of one YAML document, as the loader would read it from a file. */
function policyFrom(yaml: string): ActivePolicy {
  return { version: "test", rules: parsePolicyFile(yaml, "test.yaml").rules };
}

/** Runs `work` and returns the CONFIG_INVALID LoomError it must throw. */
async function configError(work: () => unknown): Promise<LoomError> {
  try {
    await work();
  } catch (error) {
    expect(error).toBeInstanceOf(LoomError);
    expect((error as LoomError).code).toBe(ErrorCode.CONFIG_INVALID);
    return error as LoomError;
  }
  throw new Error("expected a CONFIG_INVALID LoomError, but nothing was thrown");
}

describe("policy evaluation against infra/policies", () => {
  let shipped: ActivePolicy;
  beforeAll(async () => {
    shipped = await loadPolicyDir(SHIPPED_POLICIES);
  });

  it("policy - allows an analyst calling crm.get_contact by rule analysts-read-crm", () => {
    expect(evaluate(shipped, analyst, callTool("crm.get_contact"))).toEqual({
      effect: PolicyEffect.ALLOW,
      rule: "analysts-read-crm",
      reason: 'rule "analysts-read-crm" allows tools.call on crm.get_contact',
      rateLimit: { max: 120, per: 60_000 },
    });
  });

  it("policy - denies a contractor calling crm.get_contact by rule contractors-no-crm", () => {
    const verdict = evaluate(shipped, contractor, callTool("crm.get_contact"));
    expect(verdict.effect).toBe(PolicyEffect.DENY);
    expect(verdict.rule).toBe("contractors-no-crm");
    expect(verdict.reason).toContain("crm.get_contact");
  });

  it("policy - a matching deny beats an allow: a contractor who is also admin may not call crm tools", () => {
    const both: Principal = { id: "bo", roles: ["admin", "contractor"], attributes: {} };
    expect(evaluate(shipped, admin, callTool("crm.delete_contact")).effect).toBe(PolicyEffect.ALLOW);
    const verdict = evaluate(shipped, both, callTool("crm.delete_contact"));
    expect(verdict).toMatchObject({ effect: PolicyEffect.DENY, rule: "contractors-no-crm" });
  });

  it("policy - the deny only covers what it names: a contractor may still read the time", () => {
    expect(evaluate(shipped, contractor, callTool("time.get_time"))).toMatchObject({
      effect: PolicyEffect.ALLOW,
      rule: "everyone-reads-time",
    });
  });

  it("policy - refuses by default-deny what no rule allows, naming principal, roles and tool", () => {
    const verdict = evaluate(shipped, analyst, callTool("crm.update_contact"));
    expect(verdict.effect).toBe(PolicyEffect.DENY);
    expect(verdict.rule).toBe(DEFAULT_DENY_RULE);
    expect(verdict.rule).toBe("default-deny");
    expect(verdict.reason).toContain("ann");
    expect(verdict.reason).toContain("analyst");
    expect(verdict.reason).toContain("crm.update_contact");
  });

  it("policy - denies a viewer anything no rule names by default-deny", () => {
    expect(evaluate(shipped, viewer, callTool("crm.update_contact")).rule).toBe(DEFAULT_DENY_RULE);
    expect(evaluate(shipped, viewer, callTool("erp.list_orders")).rule).toBe(DEFAULT_DENY_RULE);
  });

  it("policy - denies a principal without roles and says so", () => {
    const verdict = evaluate(shipped, { id: "nobody", roles: [], attributes: {} }, callTool("time.get_time"));
    expect(verdict).toMatchObject({ effect: PolicyEffect.DENY, rule: DEFAULT_DENY_RULE });
    expect(verdict.reason).toContain("roles: none");
  });

  it("policy - allows staff to start a workflow by rule staff-start-workflows", () => {
    for (const principal of [analyst, contractor, admin]) {
      expect(evaluate(shipped, principal, startWorkflow("hello"))).toMatchObject({
        effect: PolicyEffect.ALLOW,
        rule: "staff-start-workflows",
      });
    }
  });

  it("policy - a tools.call request without a tool is refused by default", () => {
    expect(evaluate(shipped, admin, { action: "tools.call", resource: {} })).toMatchObject({
      effect: PolicyEffect.DENY,
      rule: DEFAULT_DENY_RULE,
    });
  });
});

describe("policy evaluation of globs and actions", () => {
  const policy = policyFrom(`
version: "t"
rules:
  - name: crm-readers
    effect: allow
    roles: [analyst]
    actions: [tools.call]
    tools: ["crm.get_*", "crm.list_*"]
  - name: any-role-reads-time
    effect: allow
    roles: ["*"]
    actions: [tools.call]
    tools: ["time.*"]
  - name: crm-workflows
    effect: allow
    roles: [analyst]
    actions: [workflow.start]
    workflows: ["crm-*"]
  - name: first-allow
    effect: allow
    roles: [admin]
    actions: [tools.call]
    tools: ["*"]
  - name: second-allow
    effect: allow
    roles: [admin]
    actions: [tools.call]
    tools: ["erp.*"]
`);

  it("policy - glob crm.get_* matches crm.get_contact but not crm.delete_contact", () => {
    expect(evaluate(policy, analyst, callTool("crm.get_contact")).rule).toBe("crm-readers");
    expect(evaluate(policy, analyst, callTool("crm.list_contacts")).rule).toBe("crm-readers");
    expect(evaluate(policy, analyst, callTool("crm.delete_contact")).rule).toBe(DEFAULT_DENY_RULE);
  });

  it("policy - glob time.* does not match another server whose name starts alike", () => {
    expect(evaluate(policy, viewer, callTool("time.now")).rule).toBe("any-role-reads-time");
    expect(evaluate(policy, viewer, callTool("timex.now")).rule).toBe(DEFAULT_DENY_RULE);
    expect(evaluate(policy, viewer, callTool("time")).rule).toBe(DEFAULT_DENY_RULE);
  });

  it("policy - globs are case-sensitive", () => {
    expect(evaluate(policy, analyst, callTool("CRM.get_contact")).rule).toBe(DEFAULT_DENY_RULE);
  });

  it("policy - role * matches any role", () => {
    expect(
      evaluate(policy, { id: "x", roles: ["anything"], attributes: {} }, callTool("time.now")).effect,
    ).toBe(PolicyEffect.ALLOW);
  });

  it("policy - workflow.start rules match workflow ids by glob", () => {
    expect(evaluate(policy, analyst, startWorkflow("crm-enrich"))).toMatchObject({
      effect: PolicyEffect.ALLOW,
      rule: "crm-workflows",
    });
    expect(evaluate(policy, analyst, startWorkflow("hello")).rule).toBe(DEFAULT_DENY_RULE);
  });

  it("policy - a tools.call rule never allows workflow.start, and the reverse", () => {
    expect(evaluate(policy, admin, startWorkflow("crm-enrich")).rule).toBe(DEFAULT_DENY_RULE);
    expect(evaluate(policy, analyst, callTool("crm-enrich")).rule).toBe(DEFAULT_DENY_RULE);
  });

  it("policy - of several matching allows, the first one in file order decides", () => {
    expect(evaluate(policy, admin, callTool("erp.list_orders")).rule).toBe("first-allow");
  });
});

describe("policy loader", () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "loom-policy-"));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const validFile = (ruleName: string) => `
version: "1"
rules:
  - name: ${ruleName}
    effect: allow
    roles: [analyst]
    actions: [tools.call]
    tools: ["time.*"]
`;

  it("policy loader - loads infra/policies with a content version", async () => {
    const policy = await loadPolicyDir(SHIPPED_POLICIES);
    expect(policy.rules.map((rule) => rule.name)).toEqual([
      "staff-start-workflows",
      "everyone-reads-time",
      "analysts-read-crm",
      "viewers-see-masked-contacts",
      "contractors-no-crm",
      "only-admins-delete",
      "eu-data-stays-in-eu",
      "exec-tools-no-shell-metacharacters",
      "arguments-at-most-64k",
      "admins-call-anything",
      "analysts-read-crm-resources",
      "owners-cancel-their-runs",
      "admins-cancel-any-run",
      "owners-rerun-their-runs",
      "admins-rerun-any-run",
      "owners-and-admins-read-runs",
      "viewers-read-masked",
      "staff-list-runs",
      "admins-read-audit",
      "owners-and-admins-use-memory",
      "admins-apply-workflows",
      "managers-answer-approvals",
      "owners-and-admins-give-feedback",
      "time-callers-sample",
      "crm-readers-sample",
      "admins-sample-anywhere",
    ]);
    expect(policy.version).toMatch(/^2@[0-9a-f]{12}$/);
  });

  it("policy loader - reads *.yaml and *.yml in file-name order and ignores other files", async () => {
    await writeFile(join(dir, "b.yml"), validFile("from-b"));
    await writeFile(join(dir, "a.yaml"), validFile("from-a"));
    await writeFile(join(dir, "c.txt"), "not: [a, policy");
    const policy = await loadPolicyDir(dir);
    expect(policy.rules.map((rule) => rule.name)).toEqual(["from-a", "from-b"]);
    expect(policy.version).toMatch(/^1\+1@[0-9a-f]{12}$/);
  });

  it("policy loader - the version changes when a file's content changes", async () => {
    await writeFile(join(dir, "a.yaml"), validFile("one"));
    const before = await loadPolicyDir(dir);
    await writeFile(join(dir, "a.yaml"), validFile("two"));
    const after = await loadPolicyDir(dir);
    expect(after.version).not.toBe(before.version);
    await writeFile(join(dir, "a.yaml"), validFile("one"));
    expect((await loadPolicyDir(dir)).version).toBe(before.version);
  });

  it("policy loader - refuses a folder without policy files", async () => {
    const error = await configError(() => loadPolicyDir(dir));
    expect(error.message).toContain(dir);
  });

  it("policy loader - refuses invalid YAML, naming the file", async () => {
    await writeFile(join(dir, "a.yaml"), validFile("fine"));
    await writeFile(join(dir, "broken.yaml"), "version: '1'\nrules: [ { name: x, effect: allow\n");
    const error = await configError(() => loadPolicyDir(dir));
    expect(error.message).toContain("broken.yaml");
    expect(error.message).toContain("not valid YAML");
  });

  it("policy loader - refuses an unknown key, naming the file, the rule and the key", async () => {
    await writeFile(
      join(dir, "extra.yaml"),
      `version: "1"
rules:
  - name: r
    effect: allow
    roles: [analyst]
    actions: [tools.call]
    tools: ["time.*"]
    colour: blue
`,
    );
    const error = await configError(() => loadPolicyDir(dir));
    expect(error.message).toContain("extra.yaml");
    expect(error.message).toContain("rules.0");
    expect(error.message).toContain("colour");
  });

  it("policy loader - refuses a tools.call rule without tools, naming the field", async () => {
    await writeFile(
      join(dir, "no-tools.yaml"),
      `version: "1"
rules:
  - name: r
    effect: allow
    roles: [analyst]
    actions: [tools.call]
`,
    );
    const error = await configError(() => loadPolicyDir(dir));
    expect(error.message).toContain("no-tools.yaml");
    expect(error.message).toContain("rules.0.tools");
  });

  it("policy loader - refuses a workflow.start rule without workflows, naming the field", () => {
    const yaml = `version: "1"
rules:
  - name: r
    effect: allow
    roles: [analyst]
    actions: [workflow.start]
    tools: ["*"]
`;
    return configError(() => parsePolicyFile(yaml, "wf.yaml")).then((error) => {
      expect(error.message).toContain("wf.yaml");
      expect(error.message).toContain("rules.0.workflows");
    });
  });

  it("policy loader - refuses an unknown effect, naming the field", async () => {
    const yaml = validFile("r").replace("effect: allow", "effect: maybe");
    const error = await configError(() => parsePolicyFile(yaml, "effect.yaml"));
    expect(error.message).toContain("effect.yaml");
    expect(error.message).toContain("rules.0.effect");
  });

  it("policy loader - refuses duplicate rule names within one file, naming the file and field", async () => {
    const yaml = `${validFile("twice")}
  - name: twice
    effect: deny
    roles: [analyst]
    actions: [tools.call]
    tools: ["crm.*"]
`;
    await writeFile(join(dir, "dupes.yaml"), yaml);
    const error = await configError(() => loadPolicyDir(dir));
    expect(error.message).toContain("dupes.yaml");
    expect(error.message).toContain("rules");
    expect(error.message).toContain(`rule "twice" is defined twice`);
  });

  it("policy loader - refuses the same rule name in two files, naming the rule", async () => {
    await writeFile(join(dir, "a.yaml"), validFile("shared-name"));
    await writeFile(join(dir, "b.yaml"), validFile("shared-name"));
    const error = await configError(() => loadPolicyDir(dir));
    expect(error.message).toContain('"shared-name"');
    expect(error.message).toContain(dir);
  });

  it("policy loader - refuses a file that is not a policy at all", async () => {
    const error = await configError(() => parsePolicyFile("just a string", "scalar.yaml"));
    expect(error.message).toContain("scalar.yaml");
  });
});

describe("policy globs", () => {
  it("policy - a deny glob also covers tool names with a slash, so no allow can sidestep it", () => {
    const policy = {
      version: "t",
      rules: [
        {
          name: "no-crm",
          effect: "deny" as const,
          roles: ["contractor"],
          actions: ["tools.call" as const],
          tools: ["crm.*"],
        },
        {
          name: "all",
          effect: "allow" as const,
          roles: ["contractor"],
          actions: ["tools.call" as const],
          tools: ["**"],
        },
      ],
    };
    const verdict = evaluate(
      policy,
      { id: "bob", roles: ["contractor"], attributes: {} },
      {
        action: "tools.call",
        resource: { tool: "crm.admin/export" },
      },
    );
    expect(verdict).toMatchObject({ effect: "deny", rule: "no-crm" });
  });
});

describe("policy - every mask the policy can require", () => {
  it("policy - every mask is the union of every rule's, whatever the action or role", () => {
    const policy = policyFrom(`
version: "1"
rules:
  - name: viewers-tools
    effect: allow
    roles: [viewer]
    actions: [tools.call]
    tools: ["crm.*"]
    obligations: { mask: { fields: [email], pii: [email, phone] } }
  - name: auditors-runs
    effect: allow
    roles: [auditor]
    actions: [runs.read]
    workflows: ["*"]
    obligations: { mask: { fields: [name, email], patterns: ["ACME-\\\\d+"] } }
  - name: admins
    effect: allow
    roles: [admin]
    actions: [runs.read]
    workflows: ["*"]
`);
    expect(everyMask(policy.rules)).toEqual({
      maskFields: ["email", "name"],
      maskPii: ["email", "phone"],
      maskPatterns: ["ACME-\\d+"],
    });
  });

  it("policy - a policy without obligations requires no mask", () => {
    const policy = policyFrom(`
version: "1"
rules:
  - { name: all, effect: allow, roles: ["*"], actions: [runs.read], workflows: ["*"] }
`);
    expect(everyMask(policy.rules)).toEqual({ maskFields: [], maskPii: [], maskPatterns: [] });
  });
});
