import { describe, expect, it } from "vitest";
import { ErrorCode } from "../../schemas/errors.ts";
import type { LoomError } from "../../services/kit/index.ts";
import { agentCardUrl } from "../../services/orchestrator/a2a/delegate-urls.ts";
import { OutboundCredentials } from "../../services/orchestrator/a2a/outbound-credentials.ts";
import { OutboundAllowList, OutboundTargets } from "../../services/orchestrator/a2a/outbound-url.ts";
import { readOrchestratorConfig } from "../../services/orchestrator/config.ts";
import { DEFAULT_LIMITS } from "../../services/orchestrator/limits.ts";
import { WorkflowCatalog } from "../../services/orchestrator/workflow-catalog.ts";

/** Names as a resolver would answer them: one public, two rebound to an internal address. */
const DNS: Record<string, string[]> = {
  "hooks.example.com": ["93.184.215.14"],
  "rebound.example.com": ["93.184.215.14", "10.1.2.3"],
  "mapped.example.com": ["::ffff:10.1.2.3"],
};
const resolve = async (hostname: string) => {
  const addresses = DNS[hostname];
  if (addresses === undefined) throw new Error(`ENOTFOUND ${hostname}`);
  return addresses;
};
const allowList = OutboundAllowList.parse(
  OutboundTargets.WEBHOOK,
  [
    "https://hooks.example.com/loom/",
    "https://rebound.example.com/",
    "https://mapped.example.com/",
    "http://10.0.0.7:8080/hooks",
  ],
  resolve,
);
const refusal = (url: string) =>
  allowList.check(url).then(
    () => undefined,
    (error: LoomError) => error,
  );

describe("outbound allow-list (webhooks)", () => {
  it("webhooks - URLs under an entry, compared parsed, are allowed", async () => {
    for (const url of [
      "https://hooks.example.com/loom/run",
      "https://HOOKS.example.com:443/loom/a/b?x=1",
      "https://hooks.example.com/loom/./run",
      "http://10.0.0.7:8080/hooks/run",
      "http://10.0.0.7:8080/hooks",
    ]) {
      expect(await refusal(url), url).toBeUndefined();
    }
  });

  it("webhooks - escapes are refused with WEBHOOK_REFUSED, saying why", async () => {
    const cases: Array<[string, RegExp]> = [
      ["https://hooks.example.com/loom/../admin", /not under an allowed prefix/],
      ["https://hooks.example.com/loom/%2E%2e/admin", /not under an allowed prefix/],
      ["https://hooks.example.com/loom/..%2Fadmin", /percent-encoded/],
      ["https://hooks.example.com/loomx", /not under an allowed prefix/],
      ["https://user@hooks.example.com/loom/", /userinfo/],
      ["https://hooks.example.com:8443/loom/", /not under an allowed prefix/],
      ["http://hooks.example.com/loom/", /not under an allowed prefix/],
      ["http://167772167:8080/hooks/../x", /not under an allowed prefix/],
      ["https://rebound.example.com/x", /internal address \(10\.1\.2\.3\)/],
      ["https://mapped.example.com/x", /internal address \(::ffff:10\.1\.2\.3\)/],
      ["ftp://hooks.example.com/loom/", /not an http\(s\) URL/],
      ["not a url", /not an http\(s\) URL/],
    ];
    for (const [url, why] of cases) {
      const error = await refusal(url);
      expect(error?.code, url).toBe(ErrorCode.WEBHOOK_REFUSED);
      expect(error?.message, url).toMatch(why);
    }
  });

  it("webhooks - a decimal form of an allowed address is the same address", async () => {
    expect(await refusal("http://167772167:8080/hooks/run")).toBeUndefined();
  });

  it("webhooks - an entry that is not an http(s) URL without userinfo is a configuration error", () => {
    expect(() => OutboundAllowList.parse(OutboundTargets.WEBHOOK, ["hooks.example.com/"])).toThrow(
      /LOOM_A2A_WEBHOOK_ALLOW entry/,
    );
    expect(() =>
      OutboundAllowList.parse(OutboundTargets.DELEGATE, ["https://u:p@agents.example.com/"]),
    ).toThrow(/LOOM_A2A_DELEGATE_ALLOW entry .* without userinfo/);
  });
});

describe("delegation allow-list", () => {
  const delegates = OutboundAllowList.parse(OutboundTargets.DELEGATE, [
    "https://agents.example.com/research/",
  ]);
  const catalog = new WorkflowCatalog(DEFAULT_LIMITS, delegates);
  const delegating = (url: string) => ({
    id: "delegating",
    steps: [
      {
        id: "both",
        parallel: [
          { id: "local", call: "crm.get_contact", with: {} },
          { id: "remote", delegate: { url: "https://agents.example.com/research/a", message: "hi" } },
        ],
      },
      {
        id: "tool",
        call: "crm.get_contact",
        with: {},
        onError: {
          steps: [{ id: "undo", delegate: { url, message: "undo" } }],
        },
      },
    ],
  });
  const parseRefusal = (url: string) => {
    try {
      catalog.parse(delegating(url), "test");
      return undefined;
    } catch (error) {
      return error as LoomError;
    }
  };

  it("delegation - a definition naming a remote agent outside LOOM_A2A_DELEGATE_ALLOW is refused when parsed, nested steps included", () => {
    for (const url of [
      "http://127.0.0.1:4222/",
      "https://agents.example.com/",
      "https://agents.example.com/research/../admin/",
      "https://agents.example.com/research",
      "https://user@agents.example.com/research/",
    ]) {
      const error = parseRefusal(url);
      expect(error?.code, url).toBe(ErrorCode.DELEGATE_REFUSED);
      expect(error?.message, url).toMatch(
        /LOOM_A2A_DELEGATE_ALLOW: https:\/\/agents\.example\.com\/research\//,
      );
    }
    expect(parseRefusal("https://agents.example.com/research/deep")).toBeUndefined();
  });

  it("delegation - the agent card's URL is resolved from the step's URL as the A2A client does", () => {
    expect(agentCardUrl("https://agents.example.com/research/")).toBe(
      "https://agents.example.com/research/.well-known/agent-card.json",
    );
    expect(agentCardUrl("http://127.0.0.1:7410")).toBe("http://127.0.0.1:7410/.well-known/agent-card.json");
  });

  it("delegation - a bad entry in either allow-list fails the configuration with CONFIG_INVALID naming it", () => {
    for (const setting of ["LOOM_A2A_DELEGATE_ALLOW", "LOOM_A2A_WEBHOOK_ALLOW"]) {
      let error: LoomError | undefined;
      try {
        readOrchestratorConfig({ [setting]: "https://ok.example.com/,ftp://agents.example.com/" });
      } catch (thrown) {
        error = thrown as LoomError;
      }
      expect(error?.code, setting).toBe(ErrorCode.CONFIG_INVALID);
      expect(error?.message, setting).toContain(
        `${setting}: entry "ftp://agents.example.com/" is not an http(s) URL without userinfo`,
      );
    }
  });
});

describe("outbound credentials", () => {
  const credentials = new OutboundCredentials({
    "https://agent.example.com": "Bearer host",
    "https://agent.example.com/research/": "Bearer research",
  });

  it("delegation - credentials go to URLs under their prefix, compared parsed, the most specific first", () => {
    expect(credentials.for("https://agent.example.com/a2a/jsonrpc")).toBe("Bearer host");
    expect(credentials.for("https://AGENT.example.com:443/research/a2a/jsonrpc")).toBe("Bearer research");
    expect(credentials.for("https://agent.example.com/research/../a2a")).toBe("Bearer host");
  });

  it("delegation - a lookalike host, another port or scheme gets no credentials", () => {
    for (const url of [
      "https://agent.example.com.evil.test/a2a",
      "https://agent.example.com:8443/a2a",
      "http://agent.example.com/a2a",
      "https://agent.example.co/a2a",
    ]) {
      expect(credentials.for(url), url).toBeUndefined();
    }
  });

  it("delegation - a credentials prefix that is not an http(s) URL without userinfo fails the configuration", () => {
    expect(() =>
      readOrchestratorConfig({
        LOOM_A2A_OUTBOUND_CREDENTIALS: JSON.stringify({ "agent.example.com": "Bearer x" }),
      }),
    ).toThrow(/LOOM_A2A_OUTBOUND_CREDENTIALS: prefix "agent.example.com" is not an http\(s\) URL/);
  });
});
