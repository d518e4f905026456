import { describe, expect, it } from "vitest";
import { ErrorCode } from "../../schemas/errors.ts";
import { readPolicyServiceConfig } from "../../services/acp-policy/config.ts";
import { type HttpAllowList, httpAllowListOf, LoomError, requestRefusal } from "../../services/kit/index.ts";
import { readOrchestratorConfig } from "../../services/orchestrator/config.ts";

const defaults = httpAllowListOf(readOrchestratorConfig({}));
const codeOf = (headers: { host?: string; origin?: string }, allowed: HttpAllowList = defaults) =>
  requestRefusal(headers, allowed)?.code;

function configError(read: () => unknown): string {
  try {
    read();
  } catch (error) {
    expect(error).toBeInstanceOf(LoomError);
    expect((error as LoomError).code).toBe(ErrorCode.CONFIG_INVALID);
    return (error as LoomError).message;
  }
  throw new Error("the configuration was accepted");
}

describe("http guard - the Host every listener answers to", () => {
  it("host - loopback names on any port, and addresses written as digits, pass", () => {
    for (const host of [
      "localhost",
      "localhost:7410",
      "LOCALHOST:1",
      "127.0.0.1:9461",
      "[::1]:7410",
      "[::1]",
    ]) {
      expect(codeOf({ host }), host).toBeUndefined();
    }
    // Controls for the unspecified forms refused below: a mapped or compatible address next to it passes.
    for (const host of [
      "10.0.0.7:9464",
      "172.18.0.5:9464",
      "[fd00::5]:9464",
      "[::ffff:127.0.0.1]:7410",
      "[::ffff:0:1]:7410",
      "[::0.0.0.1]:7410",
      "0.0.0.1:7410",
    ]) {
      expect(codeOf({ host }), host).toBeUndefined();
    }
  });

  it("host - another name, a look-alike, the unspecified address, a malformed or missing Host: 421 naming the setting", () => {
    for (const host of [
      "attacker.example:7410",
      "attacker.example",
      "localhost.attacker.example:7410",
      "127.0.0.1.attacker.example",
      "localhost.:7410",
      "localhost@attacker.example",
      "attacker.example@localhost",
      "127.1:7410",
      "0x7f000001:7410",
      "0.0.0.0:7410",
      "[::]:7410",
      // The unspecified address spelled otherwise: IPv4-mapped, IPv4-compatible, uncompressed.
      "[::ffff:0:0]:7410",
      "[::ffff:0.0.0.0]",
      "[0:0:0:0:0:ffff:0:0]:7410",
      "[::0.0.0.0]:7410",
      "[0:0:0:0:0:0:0:0]",
      "[0::]:7410",
      "localhost:7410/x",
      "localhost 7410",
      "",
      undefined,
    ]) {
      const refusal = requestRefusal(host === undefined ? {} : { host }, defaults);
      expect(refusal?.status, String(host)).toBe(421);
      expect(refusal?.code).toBe(ErrorCode.HOST_NOT_ALLOWED);
      expect(refusal?.message).toContain("LOOM_HTTP_ALLOWED_HOSTS");
    }
  });

  it("host - LOOM_HTTP_ALLOWED_HOSTS and the public URL's host add names, case aside, on any port", () => {
    const allowed = httpAllowListOf({
      ...readOrchestratorConfig({ LOOM_HTTP_ALLOWED_HOSTS: "Orchestrator, loom.internal" }),
      publicUrl: "https://loom.example.com/base",
    });
    for (const host of ["orchestrator:9464", "LOOM.internal", "loom.example.com", "loom.example.com:8443"]) {
      expect(codeOf({ host }, allowed), host).toBeUndefined();
    }
    expect(codeOf({ host: "example.com" }, allowed)).toBe(ErrorCode.HOST_NOT_ALLOWED);
    expect(codeOf({ host: "orchestrator.attacker.example" }, allowed)).toBe(ErrorCode.HOST_NOT_ALLOWED);
  });
});

describe("http guard - the Origin of a browser's request", () => {
  it("origin - none sent, local pages on any port and the listener's own pages pass", () => {
    const host = "127.0.0.1:7410";
    for (const origin of [undefined, "http://localhost:6274", "http://127.0.0.1", "http://[::1]:3000"]) {
      expect(codeOf(origin === undefined ? { host } : { host, origin }), origin).toBeUndefined();
    }
    const named = httpAllowListOf(readOrchestratorConfig({ LOOM_HTTP_ALLOWED_HOSTS: "loom.internal" }));
    expect(
      codeOf({ host: "loom.internal:7410", origin: "http://loom.internal:7410" }, named),
    ).toBeUndefined();
    expect(codeOf({ host: "loom.internal", origin: "https://loom.internal" }, named)).toBeUndefined();
  });

  it("origin - other sites, other schemes, other ports of the own host, look-alikes and garbage: 403 naming the setting", () => {
    const named = httpAllowListOf(readOrchestratorConfig({ LOOM_HTTP_ALLOWED_HOSTS: "loom.internal" }));
    for (const origin of [
      "http://attacker.example:7410",
      "https://localhost",
      "http://localhost.attacker.example",
      "null",
      "file://",
      "chrome-extension://abc",
      "http://loom.internal:8080",
    ]) {
      const refusal = requestRefusal({ host: "loom.internal:7410", origin }, named);
      expect(refusal?.status, origin).toBe(403);
      expect(refusal?.code).toBe(ErrorCode.ORIGIN_NOT_ALLOWED);
      expect(refusal?.message).toContain("LOOM_HTTP_ALLOWED_ORIGINS");
    }
  });

  it("origin - a configured origin with a port allows that port only; the public URL's origin passes", () => {
    const allowed = httpAllowListOf({
      ...readOrchestratorConfig({ LOOM_HTTP_ALLOWED_ORIGINS: "https://ide.example.com:8443" }),
      publicUrl: "https://loom.example.com",
    });
    const host = "127.0.0.1:7410";
    expect(codeOf({ host, origin: "https://ide.example.com:8443" }, allowed)).toBeUndefined();
    expect(codeOf({ host, origin: "https://loom.example.com" }, allowed)).toBeUndefined();
    expect(codeOf({ host, origin: "https://ide.example.com" }, allowed)).toBe(ErrorCode.ORIGIN_NOT_ALLOWED);
    // The list replaces the loopback default.
    expect(codeOf({ host, origin: "http://localhost:3000" }, allowed)).toBe(ErrorCode.ORIGIN_NOT_ALLOWED);
  });
});

describe("http guard - settings that cannot be an allow-list stop the start", () => {
  it("config - a host with a scheme, port, path or wildcard is CONFIG_INVALID naming the entry", () => {
    for (const entry of [
      "http://loom.example.com",
      "loom.example.com:7410",
      "loom.example.com/x",
      "*.example.com",
    ]) {
      expect(configError(() => readOrchestratorConfig({ LOOM_HTTP_ALLOWED_HOSTS: entry }))).toContain(entry);
      expect(configError(() => readPolicyServiceConfig({ LOOM_HTTP_ALLOWED_HOSTS: entry }))).toContain(
        "LOOM_HTTP_ALLOWED_HOSTS",
      );
    }
  });

  it("config - an origin with a path, userinfo, query or another scheme is CONFIG_INVALID naming the entry", () => {
    for (const entry of [
      "https://ide.example.com/app",
      "https://u@ide.example.com",
      "ide.example.com",
      "ftp://x",
    ]) {
      expect(configError(() => readOrchestratorConfig({ LOOM_HTTP_ALLOWED_ORIGINS: entry }))).toContain(
        entry,
      );
    }
  });

  it("config - the old LOOM_MCP_ALLOWED_ORIGINS is refused with its new name, not ignored", () => {
    expect(
      configError(() => readOrchestratorConfig({ LOOM_MCP_ALLOWED_ORIGINS: "http://localhost" })),
    ).toContain("LOOM_MCP_ALLOWED_ORIGINS was renamed LOOM_HTTP_ALLOWED_ORIGINS");
  });
});
