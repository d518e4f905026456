import type { IncomingHttpHeaders, RequestListener } from "node:http";
import { BlockList, isIPv4, isIPv6 } from "node:net";
import { ErrorCode } from "../../schemas/errors.ts";

/** The names every listener answers to, on any port: this machine's own loopback. */
export const LOOPBACK_HOSTS = ["localhost", "127.0.0.1", "[::1]"] as const;

/** The browser origins every listener accepts by default, on any port. */
export const LOOPBACK_ORIGINS = ["http://localhost", "http://127.0.0.1", "http://[::1]"] as const;

/**
 * What an HTTP listener answers to: the names a request's `Host` may carry (lower case, any port)
 * and the origins a browser page calling it may have (an entry without a port allows any port).
 */
export interface HttpAllowList {
  hosts: readonly string[];
  origins: readonly string[];
}

/** A request the listener refuses before any route sees it. */
export interface HttpRefusal {
  status: 421 | 403;
  code: typeof ErrorCode.HOST_NOT_ALLOWED | typeof ErrorCode.ORIGIN_NOT_ALLOWED;
  message: string;
}

/** A DNS name (labels of letters, digits and hyphens) or an address, bracketed when IPv6. */
const HOST_NAME = /^(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$/i;
/** A Host header: a name or a bracketed address, then an optional port; nothing else. */
const HOST_HEADER = /^(\[[0-9a-f:.]+\]|[^\s:/?#@[\]\\]+)(?::(\d{1,5}))?$/i;

/** Why an entry of LOOM_HTTP_ALLOWED_HOSTS is not a host name, or undefined when it is one. */
export function hostEntryProblem(entry: string): string | undefined {
  if (HOST_NAME.test(entry) || isBracketedIPv6(entry)) return undefined;
  return `${entry} is not a host name: write the name alone, without scheme, port or path (any port is allowed), e.g. loom.example.com`;
}

/** Why an entry of LOOM_HTTP_ALLOWED_ORIGINS is not an origin, or undefined when it is one. */
export function originEntryProblem(entry: string): string | undefined {
  const problem = `${entry} is not an origin: write scheme://host[:port], e.g. https://ide.example.com`;
  if (!URL.canParse(entry)) return problem;
  const url = new URL(entry);
  const bare = url.username === "" && url.password === "" && url.search === "" && url.hash === "";
  return (url.protocol === "http:" || url.protocol === "https:") && bare && url.pathname === "/"
    ? undefined
    : problem;
}

/**
 * The allow-list of a service's listeners: loopback, the host and origin of the public URL callers
 * reach the service at (the orchestrator's `LOOM_A2A_PUBLIC_URL`), and what the settings add.
 */
export function httpAllowListOf(settings: {
  LOOM_HTTP_ALLOWED_HOSTS: readonly string[];
  LOOM_HTTP_ALLOWED_ORIGINS: readonly string[];
  publicUrl?: string | undefined;
}): HttpAllowList {
  const publicUrl = settings.publicUrl === undefined ? undefined : new URL(settings.publicUrl);
  const hosts = [...LOOPBACK_HOSTS, ...settings.LOOM_HTTP_ALLOWED_HOSTS];
  const origins = [...settings.LOOM_HTTP_ALLOWED_ORIGINS];
  if (publicUrl !== undefined) {
    hosts.push(publicUrl.hostname);
    origins.push(publicUrl.origin);
  }
  return { hosts: [...new Set(hosts.map((host) => host.toLowerCase()))], origins };
}

/**
 * Whether the listener refuses this request, and why. A page on a name its attacker points at
 * 127.0.0.1 (DNS rebinding) is same-origin to the browser with whatever listens there: the `Host`
 * it sends still names the attacker's host, so only listed names pass. An address written as
 * digits cannot be rebound and passes too (Prometheus scrapes each replica by its address), except
 * the unspecified one in any spelling (`0.0.0.0`, `[::]`, `[::ffff:0:0]`, `[::0.0.0.0]`). A browser's `Origin` (sent on POSTs and cross-origin requests) must be a
 * listed origin or the request's own host: a page elsewhere cannot drive the listener either.
 */
export function requestRefusal(
  headers: IncomingHttpHeaders,
  allowed: HttpAllowList,
): HttpRefusal | undefined {
  const host = headers.host;
  const name = host === undefined ? undefined : hostNameOf(host);
  if (host === undefined || name === undefined || !isAllowedHostName(name, allowed)) {
    return {
      status: 421,
      code: ErrorCode.HOST_NOT_ALLOWED,
      message: `Host ${host ?? "(none)"} is not a name this service answers to: add the name to LOOM_HTTP_ALLOWED_HOSTS to allow it`,
    };
  }
  const origin = headers.origin;
  if (origin === undefined || isOriginAllowed(origin, host, allowed)) return undefined;
  return {
    status: 403,
    code: ErrorCode.ORIGIN_NOT_ALLOWED,
    message: `Origin ${origin} may not call this service: add it to LOOM_HTTP_ALLOWED_ORIGINS to allow it`,
  };
}

/** Wraps a listener's handler: a refused request is answered with a JSON error and goes no further. */
export function guardRequests(allowed: HttpAllowList, handle: RequestListener): RequestListener {
  return (req, res) => {
    const refusal = requestRefusal(req.headers, allowed);
    if (refusal === undefined) return handle(req, res);
    res
      .writeHead(refusal.status, { "content-type": "application/json; charset=utf-8" })
      .end(JSON.stringify({ error: { code: refusal.code, message: refusal.message } }));
  };
}

function hostNameOf(host: string): string | undefined {
  const match = HOST_HEADER.exec(host);
  return match?.[1]?.toLowerCase();
}

/**
 * The unspecified address in every spelling: `0.0.0.0`, `::` (which is also `::0.0.0.0`, its
 * IPv4-compatible form) and, since BlockList checks an IPv4-mapped address against the IPv4 rules,
 * `::ffff:0:0` / `::ffff:0.0.0.0`.
 */
const UNSPECIFIED = new BlockList();
UNSPECIFIED.addAddress("0.0.0.0", "ipv4");
UNSPECIFIED.addAddress("::", "ipv6");

function isAllowedHostName(name: string, allowed: HttpAllowList): boolean {
  if (allowed.hosts.includes(name)) return true;
  if (isIPv4(name)) return !UNSPECIFIED.check(name, "ipv4");
  return isBracketedIPv6(name) && !UNSPECIFIED.check(name.slice(1, -1), "ipv6");
}

function isBracketedIPv6(text: string): boolean {
  return text.startsWith("[") && text.endsWith("]") && isIPv6(text.slice(1, -1));
}

function isOriginAllowed(origin: string, host: string, allowed: HttpAllowList): boolean {
  if (!URL.canParse(origin)) return false;
  const url = new URL(origin);
  if (url.protocol !== "http:" && url.protocol !== "https:") return false;
  // The page was served by this listener under a name the Host check let through.
  const own = `${url.protocol}//${host}`;
  if (URL.canParse(own) && url.host === new URL(own).host) return true;
  return allowed.origins.some((text) => {
    const entry = new URL(text);
    return (
      entry.protocol === url.protocol &&
      entry.hostname === url.hostname &&
      (entry.port === "" || entry.port === url.port)
    );
  });
}
