import { describe, expect, it } from "vitest";
import { ErrorCode } from "../../schemas/errors.ts";
import type { LoomError } from "../../services/kit/index.ts";
import { WebhookAllowList } from "../../services/orchestrator/a2a/webhook-url.ts";

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
const allowList = WebhookAllowList.parse(
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

describe("webhook allow-list", () => {
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
    expect(() => WebhookAllowList.parse(["hooks.example.com/"])).toThrow(/LOOM_A2A_WEBHOOK_ALLOW entry/);
    expect(() => WebhookAllowList.parse(["https://u:p@hooks.example.com/"])).toThrow(/without userinfo/);
  });
});
