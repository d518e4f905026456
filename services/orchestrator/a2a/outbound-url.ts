import { lookup } from "node:dns/promises";
import { BlockList, isIP } from "node:net";
import { ErrorCode } from "../../../schemas/errors.ts";
import { LoomError } from "../../kit/index.ts";

/** One allow-list entry as URLs are compared: scheme, host, port and the path segments under it. */
export interface AllowedPrefix {
  text: string;
  protocol: string;
  hostname: string;
  port: string;
  segments: string[];
}

/**
 * What an allowed host name must not resolve to: loopback, private, shared, link-local,
 * benchmarking, multicast, reserved, broadcast and unspecified ranges.
 */
const INTERNAL = new BlockList();
for (const [network, prefix] of [
  ["0.0.0.0", 8],
  ["10.0.0.0", 8],
  ["100.64.0.0", 10],
  ["127.0.0.0", 8],
  ["169.254.0.0", 16],
  ["172.16.0.0", 12],
  ["192.168.0.0", 16],
  ["198.18.0.0", 15],
  // Multicast, then reserved up to and with 255.255.255.255 (limited broadcast).
  ["224.0.0.0", 4],
  ["240.0.0.0", 4],
] as const) {
  INTERNAL.addSubnet(network, prefix, "ipv4");
}
// No `::ffff:0:0/96`: BlockList checks an IPv4-mapped address (`::ffff:10.1.2.3`) against the IPv4
// ranges above already, and that range would match every IPv4 address, public ones included.
for (const [network, prefix] of [
  // Unspecified, loopback and the deprecated IPv4-compatible addresses (`::127.0.0.1`): none is a
  // public destination, and a stack that still maps them reaches the embedded IPv4 address.
  ["::", 96],
  // NAT64 for local use (RFC 8215): translates to addresses of the local network.
  ["64:ff9b:1::", 48],
  ["fc00::", 7],
  ["fe80::", 10],
  // Site-local (deprecated, RFC 3879): still routed inside some networks.
  ["fec0::", 10],
  ["ff00::", 8],
] as const) {
  INTERNAL.addSubnet(network, prefix, "ipv6");
}

/**
 * IPv6 ranges that carry an IPv4 address, and the 16-bit group it starts at: the well-known NAT64
 * prefix (`64:ff9b::10.0.0.1`, RFC 6052) and 6to4 (`2002:0a00:0001::`, RFC 3056). A gateway turns
 * them into the embedded IPv4 address, so they are internal when that one is.
 */
const EMBEDDED_IPV4 = [
  { network: "64:ff9b::", prefix: 96, group: 6 },
  { network: "2002::", prefix: 16, group: 1 },
].map(({ network, prefix, group }) => {
  const range = new BlockList();
  range.addSubnet(network, prefix, "ipv6");
  return { range, group };
});

/** Percent-encoded `.`, `/`, `\` and `%`: a server that decodes them would see other segments. */
const ENCODED_SEPARATOR = /%(2e|2f|5c|25)/i;

/** What one allow-list guards: the setting that lists its prefixes and how its refusals read. */
export interface OutboundTarget {
  /** The setting (environment variable) naming the allowed prefixes: every refusal names it. */
  setting: string;
  /** What a URL of this list is, in messages ("webhook"). */
  noun: string;
  code: ErrorCode;
}

/** The requests Loom sends to URLs a caller names, each with its own allow-list. */
export const OutboundTargets = {
  WEBHOOK: { setting: "LOOM_A2A_WEBHOOK_ALLOW", noun: "webhook", code: ErrorCode.WEBHOOK_REFUSED },
  DELEGATE: { setting: "LOOM_A2A_DELEGATE_ALLOW", noun: "remote agent", code: ErrorCode.DELEGATE_REFUSED },
} as const satisfies Record<string, OutboundTarget>;

/** Why `text` cannot be an allow-list entry, or undefined when it can: for the config's validation. */
export function allowListEntryProblem(text: string): string | undefined {
  const url = parseHttpUrl(text);
  return url === undefined || url.username !== "" || url.password !== ""
    ? `entry "${text}" is not an http(s) URL without userinfo`
    : undefined;
}

/**
 * An allow-list of URL prefixes for requests Loom sends where a caller says (webhooks,
 * `LOOM_A2A_WEBHOOK_ALLOW`; remote agents, `LOOM_A2A_DELEGATE_ALLOW`). A URL is compared parsed and
 * normalised, never as text: same scheme, host and port as an entry, and the entry's path segments
 * as a prefix of its own after dot segments are resolved. Userinfo, percent-encoded separators and
 * host names that resolve to internal addresses are refused; an internal listener is reachable
 * only when an entry names its address literally.
 */
export class OutboundAllowList {
  readonly target: OutboundTarget;
  readonly #entries: AllowedPrefix[];
  readonly #resolve: (hostname: string) => Promise<string[]>;

  private constructor(
    target: OutboundTarget,
    entries: AllowedPrefix[],
    resolve: (hostname: string) => Promise<string[]>,
  ) {
    this.target = target;
    this.#entries = entries;
    this.#resolve = resolve;
  }

  /**
   * Parses the configured prefixes; an entry that is not an http(s) URL, or that carries userinfo,
   * is a CONFIG_INVALID error. `resolve` is the name lookup (the system's by default).
   */
  static parse(
    target: OutboundTarget,
    prefixes: readonly string[],
    resolve: (hostname: string) => Promise<string[]> = resolveAll,
  ): OutboundAllowList {
    const entries = prefixes.map((text) => {
      const problem = allowListEntryProblem(text);
      if (problem !== undefined)
        throw new LoomError(ErrorCode.CONFIG_INVALID, `${target.setting} ${problem}`);
      return prefixOf(text);
    });
    return new OutboundAllowList(target, entries, resolve);
  }

  /**
   * Throws the target's refusal unless `text` is under an entry, compared without resolving its
   * host: cheap enough for checking a definition. `check` is what must pass before a request.
   */
  assertListed(text: string): URL {
    const url = parseHttpUrl(text);
    if (url === undefined) this.refuse(text, "it is not an http(s) URL");
    if (url.username !== "" || url.password !== "") this.refuse(text, "it carries userinfo");
    if (ENCODED_SEPARATOR.test(url.pathname))
      this.refuse(text, "its path holds a percent-encoded dot, slash, backslash or percent sign");
    if (!this.#entries.some((entry) => isUnder(url, entry)))
      this.refuse(text, "it is not under an allowed prefix");
    return url;
  }

  /** Throws the target's refusal (a LoomError of its code) naming why `text` may not be requested. */
  async check(text: string): Promise<void> {
    const url = this.assertListed(text);
    if (isIP(bare(url.hostname)) !== 0) return;
    let addresses: string[];
    try {
      addresses = await this.#resolve(url.hostname);
    } catch (cause) {
      const message = `${this.target.noun} ${text} refused: its host does not resolve`;
      throw new LoomError(this.target.code, message, { cause });
    }
    const internal = addresses.find((address) => isInternal(address));
    if (internal !== undefined || addresses.length === 0) {
      this.refuse(
        text,
        `its host resolves to an internal address (${internal ?? "none"}); name an internal listener by its address`,
      );
    }
  }

  /** The target's refusal of `text`, saying why and which setting lists what is allowed. */
  refuse(text: string, why: string): never {
    const allowed = this.#entries.map((entry) => entry.text).join(", ") || "none";
    throw new LoomError(
      this.target.code,
      `${this.target.noun} ${text} refused: ${why} (${this.target.setting}: ${allowed})`,
    );
  }
}

/** An entry `allowListEntryProblem` found nothing wrong with, ready for comparing. */
export function prefixOf(text: string): AllowedPrefix {
  const url = new URL(text);
  return { text, ...comparable(url), segments: segmentsOf(url.pathname, true) };
}

/** Whether `url` is under `prefix`: same scheme, host and port, and the prefix's whole path segments first. */
export function isUnder(url: URL, prefix: AllowedPrefix): boolean {
  const target = comparable(url);
  const segments = segmentsOf(url.pathname, false);
  return (
    prefix.protocol === target.protocol &&
    prefix.hostname === target.hostname &&
    prefix.port === target.port &&
    prefix.segments.every((segment, index) => segments[index] === segment)
  );
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

/** Whether an address is internal (`INTERNAL`, or an IPv6 form of an internal IPv4 one): never reached through a name. */
export function isInternal(address: string): boolean {
  const family = isIP(address);
  if (family === 0) return false;
  if (family === 4) return INTERNAL.check(address, "ipv4");
  if (INTERNAL.check(address, "ipv6")) return true;
  const embedding = EMBEDDED_IPV4.find(({ range }) => range.check(address, "ipv6"));
  if (embedding === undefined) return false;
  const groups = ipv6Groups(address);
  // An address BlockList takes but this cannot read (a zone index) is refused rather than guessed.
  if (groups === undefined) return true;
  const [high = 0, low = 0] = groups.slice(embedding.group, embedding.group + 2);
  return INTERNAL.check(`${high >> 8}.${high & 255}.${low >> 8}.${low & 255}`, "ipv4");
}

/** The eight 16-bit groups of an IPv6 address, read from the WHATWG URL parser's canonical form. */
function ipv6Groups(address: string): number[] | undefined {
  const text = `http://[${address}]/`;
  if (!URL.canParse(text)) return undefined;
  const [head = "", tail] = bare(new URL(text).hostname).split("::");
  const parse = (part: string) =>
    part === "" ? [] : part.split(":").map((group) => Number.parseInt(group, 16));
  const first = parse(head);
  const last = tail === undefined ? [] : parse(tail);
  return [...first, ...Array<number>(8 - first.length - last.length).fill(0), ...last];
}

async function resolveAll(hostname: string): Promise<string[]> {
  return (await lookup(bare(hostname), { all: true, verbatim: true })).map((entry) => entry.address);
}
