import { describe, expect, it } from "vitest";
import { ErrorCode } from "../../schemas/errors.ts";
import type { PolicyDecisionRequest, Principal } from "../../schemas/policy.ts";
import { evaluate, judgeRules } from "../../services/acp-policy/evaluate.ts";
import { type ActivePolicy, parsePolicyFile } from "../../services/acp-policy/policy-loader.ts";
import { RateLimiter } from "../../services/acp-policy/rate-limiter.ts";
import { LoomError } from "../../services/kit/errors.ts";

function policyFrom(yaml: string): ActivePolicy {
  return { version: "test", rules: parsePolicyFile(yaml, "test.yaml").rules };
}

const person = (id: string, roles: string[], attributes: Record<string, string> = {}): Principal => ({
  id,
  roles,
  attributes,
});
const call = (tool: string, args: Record<string, unknown> = {}): PolicyDecisionRequest => ({
  action: "tools.call",
  resource: { tool },
  arguments: args,
});

describe("policy language - conditions, context, guards, obligations", () => {
  const policy = policyFrom(`
version: "t"
rules:
  - name: eu-analysts-by-attribute
    effect: allow
    roles: [analyst]
    attributes: { department: [sales, "ops-*"] }
    actions: [tools.call]
    tools: ["crm.*"]
  - name: viewers-masked
    effect: allow
    roles: [viewer]
    actions: [tools.call]
    tools: ["crm.*"]
    obligations: { mask: { fields: [email], pii: [ssn] } }
  - name: everyone-masked-cards
    effect: allow
    roles: ["*"]
    actions: [tools.call]
    tools: ["crm.*"]
    when: "principal.id != 'nobody'"
    obligations: { mask: { pii: [card], patterns: ["ACCT-[0-9]+"] } }
  - name: public-only-for-guests
    effect: allow
    roles: [guest]
    actions: [tools.call]
    tools: ["*"]
    classifications: [public]
  - name: small-args-only
    effect: deny
    roles: ["*"]
    actions: [tools.call]
    tools: ["*"]
    violates: { max_bytes: 40 }
  - name: no-shell-for-exec
    effect: deny
    roles: ["*"]
    actions: [tools.call]
    tools: ["*"]
    exec: true
    violates: { shell_metacharacters: true, patterns: ["rm\\\\s+-rf"] }
  - name: eu-stays-in-eu
    effect: deny
    roles: ["*"]
    actions: [tools.call]
    tools: ["*"]
    context: { source_region: [eu] }
    when: "context.destination_region != 'eu'"
  - name: broken-condition-denies
    effect: deny
    roles: [tester]
    actions: [tools.call]
    tools: ["*"]
    when: "args.missing.field == 1"
  - name: admins-run-anything
    effect: allow
    roles: [admin, tester]
    actions: [tools.call]
    tools: ["*"]
`);

  it("policy - an attribute glob must match: sales and ops-eu analysts yes, marketing no", () => {
    expect(evaluate(policy, person("a", ["analyst"], { department: "ops-eu" }), call("crm.get")).effect).toBe(
      "allow",
    );
    expect(
      evaluate(policy, person("a", ["analyst"], { department: "marketing" }), call("crm.get")).rule,
    ).toBe("everyone-masked-cards");
  });

  it("policy - obligations are the union of every matching allow, the first allow decides", () => {
    const verdict = evaluate(policy, person("v", ["viewer"]), call("crm.get_contact"));
    expect(verdict.rule).toBe("viewers-masked");
    expect(verdict.obligations).toEqual({
      maskFields: ["email"],
      maskPii: ["ssn", "card"],
      maskPatterns: ["ACCT-[0-9]+"],
    });
  });

  it("policy - a CEL condition that is false leaves the rule out", () => {
    expect(evaluate(policy, person("nobody", ["clerk"]), call("crm.get")).rule).toBe("default-deny");
    expect(evaluate(policy, person("clara", ["clerk"]), call("crm.get")).rule).toBe("everyone-masked-cards");
  });

  it("policy - a deny whose CEL condition errors still denies (fail closed)", () => {
    expect(evaluate(policy, person("t", ["tester"]), call("time.now", {})).rule).toBe(
      "broken-condition-denies",
    );
  });

  it("policy - classification: a guest may call public tools only", () => {
    const guest = person("g", ["guest"]);
    expect(evaluate(policy, guest, call("time.now"), { tool: { classification: "public" } }).effect).toBe(
      "allow",
    );
    expect(evaluate(policy, guest, call("erp.get"), { tool: { classification: "restricted" } }).effect).toBe(
      "deny",
    );
  });

  it("policy - argument size guard denies arguments over max_bytes, naming the size", () => {
    const verdict = evaluate(policy, person("x", ["admin"]), call("time.now", { text: "x".repeat(100) }));
    expect(verdict).toMatchObject({ effect: "deny", rule: "small-args-only" });
    expect(verdict.reason).toMatch(/\d+ bytes, more than the 40 allowed/);
  });

  it("policy - shell metacharacters and deny patterns are refused only for tools marked exec", () => {
    const admin = person("x", ["admin"]);
    const exec = { tool: { exec: true } };
    expect(evaluate(policy, admin, call("sh.run", { cmd: "ls; id" }), exec)).toMatchObject({
      effect: "deny",
      rule: "no-shell-for-exec",
    });
    expect(evaluate(policy, admin, call("sh.run", { cmd: "rm -rf x" }), exec).rule).toBe("no-shell-for-exec");
    expect(evaluate(policy, admin, call("sh.run", { cmd: "ls -la" }), exec).effect).toBe("allow");
    expect(evaluate(policy, admin, call("notes.add", { text: "a; b" }), {}).effect).toBe("allow");
  });

  it("policy - EU data stays in the EU: source eu to destination us is denied, eu to eu allowed", () => {
    const admin = person("x", ["admin"]);
    const eu = { tool: { region: "eu" } };
    expect(evaluate(policy, admin, call("crm.get"), { ...eu, destinationRegion: "us" }).rule).toBe(
      "eu-stays-in-eu",
    );
    expect(evaluate(policy, admin, call("crm.get"), { ...eu, destinationRegion: "eu" }).effect).toBe("allow");
    expect(
      evaluate(policy, admin, call("crm.get"), { tool: { region: "us" }, destinationRegion: "us" }).effect,
    ).toBe("allow");
  });

  it("policy explain - every rule says whether it matched and why not", () => {
    const judged = judgeRules(policy, person("v", ["viewer"]), call("crm.get_contact"));
    expect(judged.find((j) => j.rule.name === "viewers-masked")).toMatchObject({
      matched: true,
      why: "every condition holds",
    });
    expect(judged.find((j) => j.rule.name === "eu-analysts-by-attribute")?.why).toBe(
      "no role of the caller matches",
    );
    expect(judged.find((j) => j.rule.name === "small-args-only")?.why).toBe(
      "the arguments keep to its guard",
    );
  });

  it("policy loader - refuses a CEL syntax error and a bad regular expression, naming the rule", () => {
    const load = (rule: string) => () =>
      parsePolicyFile(
        `version: "1"\nrules:\n  - { name: r1, effect: deny, roles: ["*"], actions: [tools.call], tools: ["*"], ${rule} }\n`,
        "p.yaml",
      );
    for (const bad of ['when: "principal.roles +"', 'violates: { patterns: ["(unclosed"] }']) {
      expect(load(bad)).toThrow(LoomError);
      try {
        load(bad)();
      } catch (error) {
        expect((error as LoomError).code).toBe(ErrorCode.CONFIG_INVALID);
        expect((error as LoomError).message).toMatch(/p\.yaml: rule "r1"/);
      }
    }
  });

  it("policy loader - obligations on a deny and guards on an allow are refused", () => {
    expect(() =>
      parsePolicyFile(
        'version: "1"\nrules:\n  - { name: r, effect: deny, roles: [a], actions: [tools.call], tools: ["*"], obligations: { mask: { fields: [x] } } }\n',
        "p.yaml",
      ),
    ).toThrow(/allow rules/);
    expect(() =>
      parsePolicyFile(
        'version: "1"\nrules:\n  - { name: r, effect: allow, roles: [a], actions: [tools.call], tools: ["*"], violates: { max_bytes: 1 } }\n',
        "p.yaml",
      ),
    ).toThrow(/deny rules/);
  });
});

describe("rate limiter", () => {
  it("rate limit - allows max calls per window per key, then refuses until the window slides", () => {
    const limiter = new RateLimiter();
    const limit = { max: 2, per: 1_000 };
    expect(limiter.tryAcquire("ann/crm", limit, 0)).toBe(true);
    expect(limiter.tryAcquire("ann/crm", limit, 100)).toBe(true);
    expect(limiter.tryAcquire("ann/crm", limit, 200)).toBe(false);
    expect(limiter.tryAcquire("bob/crm", limit, 200)).toBe(true);
    expect(limiter.tryAcquire("ann/crm", limit, 1_050)).toBe(true);
  });
});
