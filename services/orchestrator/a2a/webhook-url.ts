import { lookup } from "node:dns/promises";
import { BlockList, isIP } from "node:net";
import { ErrorCode } from "../../../schemas/errors.ts";
import { LoomError } from "../../kit/index.ts";

/** One allow-list entry as URLs are compared: scheme, host, port and the path segments under it. */
interface AllowedPrefix {
  text: string;
  protocol: string;
  hostname: string;
  port: string;
  segments: string[];
}

/** What a webhook's host name must not resolve to: loopback, private, link-local and unspecified ranges. */
const INTERNAL = new BlockList();
for (const [network, prefix] of [
  ["0.0.0.0", 8],
  ["10.0.0.0", 8],
  ["100.64.0.0", 10],
  ["127.0.0.0", 8],
  ["169.254.0.0", 16],
  ["172.16.0.0", 12],
  ["192.168.0.0", 16],
] as const) {
  INTERNAL.addSubnet(network, prefix, "ipv4");
}
// No `::ffff:0:0/96`: BlockList checks an IPv4-mapped address (`::ffff:10.1.2.3`) against the IPv4
// ranges above already, and that range would match every IPv4 address, public ones included.
for (const [network, prefix] of [
  ["::", 128],
  ["::1", 128],
  ["fc00::", 7],
  ["fe80::", 10],
] as const) {
  INTERNAL.addSubnet(network, prefix, "ipv6");
}

/** Percent-encoded `.`, `/`, `\` and `%`: a server that decodes them would see other segments. */
const ENCODED_SEPARATOR = /%(2e|2f|5c|25)/i;

/**
 * The webhook allow-list (`LOOM_A2A_WEBHOOK_ALLOW`). A URL is compared parsed and normalised, never
 * as text: same scheme, host and port as an entry, and the entry's path segments as a prefix of its
 * own after dot segments are resolved. Userinfo, percent-encoded separators and host names that
 * resolve to internal addresses are refused; an internal listener is reachable only when an entry
 * names its address literally.
 */
export class WebhookAllowList {
  readonly #entries: AllowedPrefix[];
  readonly #resolve: (hostname: string) => Promise<string[]>;

  private constructor(entries: AllowedPrefix[], resolve: (hostname: string) => Promise<string[]>) {
    this.#entries = entries;
    this.#resolve = resolve;
  }

  /**
   * Parses the configured prefixes; an entry that is not an http(s) URL, or that carries userinfo,
   * is a configuration error. `resolve` is the name lookup (the system's by default).
   */
  static parse(
    prefixes: readonly string[],
    resolve: (hostname: string) => Promise<string[]> = resolveAll,
  ): WebhookAllowList {
    const entries = prefixes.map((text) => {
      const url = parseHttpUrl(text);
      if (url === undefined || url.username !== "" || url.password !== "") {
        throw new LoomError(
          ErrorCode.CONFIG_INVALID,
          `LOOM_A2A_WEBHOOK_ALLOW entry "${text}" is not an http(s) URL without userinfo`,
        );
      }
      return { text, ...comparable(url), segments: segmentsOf(url.pathname, true) };
    });
    return new WebhookAllowList(entries, resolve);
  }

  /** Throws a WEBHOOK_REFUSED LoomError naming why `text` may not receive webhooks. */
  async check(text: string): Promise<void> {
    const url = parseHttpUrl(text);
    if (url === undefined) this.#refuse(text, "it is not an http(s) URL");
    if (url.username !== "" || url.password !== "") this.#refuse(text, "it carries userinfo");
    if (ENCODED_SEPARATOR.test(url.pathname))
      this.#refuse(text, "its path holds a percent-encoded dot, slash, backslash or percent sign");
    const target = comparable(url);
    const segments = segmentsOf(url.pathname, false);
    const allowed = this.#entries.some(
      (entry) =>
        entry.protocol === target.protocol &&
        entry.hostname === target.hostname &&
        entry.port === target.port &&
        entry.segments.every((segment, index) => segments[index] === segment),
    );
    if (!allowed) this.#refuse(text, "it is not under an allowed prefix");
    if (isIP(bare(url.hostname)) !== 0) return;
    let addresses: string[];
    try {
      addresses = await this.#resolve(url.hostname);
    } catch (cause) {
      throw new LoomError(ErrorCode.WEBHOOK_REFUSED, `webhook ${text} refused: its host does not resolve`, {
        cause,
      });
    }
    const internal = addresses.find((address) => isInternal(address));
    if (internal !== undefined || addresses.length === 0) {
      this.#refuse(
        text,
        `its host resolves to an internal address (${internal ?? "none"}); name an internal listener by its address`,
      );
    }
  }

  #refuse(text: string, why: string): never {
    const allowed = this.#entries.map((entry) => entry.text).join(", ") || "none";
    throw new LoomError(
      ErrorCode.WEBHOOK_REFUSED,
      `webhook ${text} refused: ${why} (LOOM_A2A_WEBHOOK_ALLOW: ${allowed})`,
    );
  }
}

function parseHttpUrl(text: string): URL | undefined {
  if (!URL.canParse(text)) return undefined;
  const url = new URL(text);
  return url.protocol === "http:" || url.protocol === "https:" ? url : undefined;
}

/** Scheme, host and port with the defaults filled in, as the WHATWG parser normalised them. */
function comparable(url: URL): { protocol: string; hostname: string; port: string } {
  const port = url.port !== "" ? url.port : url.protocol === "https:" ? "443" : "80";
  return { protocol: url.protocol, hostname: url.hostname, port };
}

/** `/hooks/run` as ["hooks", "run"]; an entry's trailing slash adds no empty segment to match. */
function segmentsOf(pathname: string, entry: boolean): string[] {
  const segments = pathname.split("/").slice(1);
  return entry && segments.at(-1) === "" ? segments.slice(0, -1) : segments;
}

/** `[::1]` as `::1`: URL keeps the brackets of an IPv6 host. */
function bare(hostname: string): string {
  return hostname.startsWith("[") ? hostname.slice(1, -1) : hostname;
}

function isInternal(address: string): boolean {
  const family = isIP(address);
  return family !== 0 && INTERNAL.check(address, family === 4 ? "ipv4" : "ipv6");
}

async function resolveAll(hostname: string): Promise<string[]> {
  return (await lookup(bare(hostname), { all: true, verbatim: true })).map((entry) => entry.address);
}
