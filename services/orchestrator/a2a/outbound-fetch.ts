import { type LookupAddress, lookup } from "node:dns";
import type { LookupFunction } from "node:net";
import { isInternal, type OutboundAllowList } from "./outbound-url.ts";

/**
 * The name lookup of every outbound connection: a host name that resolves to an internal address
 * fails here, at the moment the connection is made. The allow-list's check resolves the name too,
 * but a name whose address changes between that check and the connection (DNS rebinding) would
 * otherwise reach an internal listener. An address written literally in the URL skips the lookup;
 * the allow-list decides those.
 */
const externalOnlyLookup: LookupFunction = (hostname, options, callback) => {
  lookup(hostname, { ...options, all: true }, (error, addresses: LookupAddress[]) => {
    if (error !== null) return callback(error, "", 0);
    const internal = addresses.find((entry) => isInternal(entry.address));
    if (internal !== undefined || addresses.length === 0) {
      const refused = Object.assign(new Error(`${hostname} resolves to an internal address`), {
        code: "ENOTFOUND",
      });
      return callback(refused, "", 0);
    }
    if (options.all === true)
      return (callback as unknown as (e: null, all: LookupAddress[]) => void)(null, addresses);
    const [first] = addresses as [LookupAddress];
    callback(null, first.address, first.family);
  });
};

/** undici, loaded at the first outbound request: most orchestrators never make one. */
let outboundClient:
  | Promise<{ fetch: typeof import("undici").fetch; agent: import("undici").Agent }>
  | undefined;
function client() {
  outboundClient ??= import("undici").then(({ Agent, fetch }) => ({
    fetch,
    agent: new Agent({ connect: { lookup: externalOnlyLookup } }),
  }));
  return outboundClient;
}

/**
 * `fetch` for a URL a caller named: the URL is checked against the allow-list (its host resolved
 * again, since the list or the host's address may have changed) right before the request leaves,
 * the connection made only to an external address, and a redirect is refused, never followed: it
 * could point anywhere, internal listeners included. Shaped as `fetch`, so an SDK that makes its
 * own requests (the A2A client) sends each through it.
 */
export function allowListedFetch(allowList: OutboundAllowList): typeof fetch {
  return (async (input: string | URL | Request, init?: RequestInit) => {
    const url = input instanceof Request ? input.url : String(input);
    await allowList.check(url);
    const outbound = await client();
    const request = input instanceof Request ? new Request(input, init) : undefined;
    const response = await outbound.fetch(url, {
      method: request?.method ?? init?.method,
      headers: request?.headers ?? init?.headers,
      body: request?.body ?? init?.body,
      signal: request?.signal ?? init?.signal,
      duplex: "half",
      redirect: "manual",
      dispatcher: outbound.agent,
    } as Parameters<typeof outbound.fetch>[1]);
    if (response.status >= 300 && response.status < 400) {
      await response.body?.cancel();
      allowList.refuse(url, `it answered a redirect (${response.status}), and Loom follows none`);
    }
    return response as unknown as Response;
  }) as typeof fetch;
}
