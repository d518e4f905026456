import { describe, expect, it } from "vitest";
import { ErrorCode } from "../../schemas/errors.ts";
import type { LoomError } from "../../services/kit/index.ts";
import { agentCardUrl } from "../../services/orchestrator/a2a/delegate-urls.ts";
import { OutboundCredentials } from "../../services/orchestrator/a2a/outbound-credentials.ts";
import {
  isInternal,
  OutboundAllowList,
  OutboundTargets,
} from "../../services/orchestrator/a2a/outbound-url.ts";
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

describe("outbound - internal addresses a name must not resolve to", () => {
  it("internal - every internal range, and every IPv6 spelling of an internal IPv4 address, is internal", () => {
    for (const address of [
      "0.0.0.0",
      "10.1.2.3",
      "100.64.0.1",
      "127.0.0.1",
      "169.254.169.254",
      "172.16.0.1",
      "192.168.1.1",
      "198.18.0.1",
      "198.19.255.255",
      "224.0.0.1",
      "239.255.255.250",
      "240.0.0.1",
      "255.255.255.255",
      "::",
      "::1",
      // IPv4-compatible (deprecated): the whole ::/96, public embedded addresses included.
      "::127.0.0.1",
      "::10.0.0.1",
      "::8.8.8.8",
      // IPv4-mapped.
      "::ffff:127.0.0.1",
      "::ffff:198.18.0.1",
      // NAT64 (well-known prefix) of an internal IPv4 address, dotted or in hex.
      "64:ff9b::127.0.0.1",
      "64:ff9b::10.0.0.1",
      "64:ff9b::a9fe:a9fe",
      "64:FF9B:0:0:0:0:C0A8:101",
      // NAT64 for local use: any.
      "64:ff9b:1::8.8.8.8",
      // 6to4 of an internal IPv4 address (10.0.0.1, 127.0.0.1, 169.254.169.254, 198.18.0.1).
      "2002:a00:1::",
      "2002:7f00:1::1",
      "2002:a9fe:a9fe:1:2:3:4:5",
      "2002:c612:1::",
      "fc00::1",
      "fd12:3456::1",
      "fe80::1",
      "fec0::1",
      "feff::1",
      "ff02::1",
    ]) {
      expect(isInternal(address), address).toBe(true);
    }
  });

  it("internal - controls: public addresses next to each range, and NAT64 / 6to4 of public IPv4 ones, are not", () => {
    for (const address of [
      "8.8.8.8",
      "93.184.215.14",
      "198.17.255.255",
      "198.20.0.1",
      "223.255.255.255",
      "::ffff:8.8.8.8",
      "64:ff9b::8.8.8.8",
      "64:ff9b::5db8:d70e",
      "2002:808:808::1",
      "2002:5db8:d70e::",
      "2606:4700:4700::1111",
      "2001:db8::1",
      "fbff:ffff::1",
      "not an address",
    ]) {
      expect(isInternal(address), address).toBe(false);
    }
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
