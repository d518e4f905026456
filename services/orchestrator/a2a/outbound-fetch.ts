import type { OutboundAllowList } from "./outbound-url.ts";

/**
 * `fetch` for a URL a caller named: the URL is checked against the allow-list (its host resolved
 * again, since the list or the host's address may have changed) right before the request leaves,
 * and a redirect is refused, never followed: it could point anywhere, internal listeners included.
 * Shaped as `fetch`, so an SDK that makes its own requests (the A2A client) sends each through it.
 */
export function allowListedFetch(allowList: OutboundAllowList): typeof fetch {
  return async (input, init) => {
    const url = input instanceof Request ? input.url : String(input);
    await allowList.check(url);
    const response = await fetch(input, { ...init, redirect: "manual" });
    if (response.status >= 300 && response.status < 400) {
      await response.body?.cancel();
      allowList.refuse(url, `it answered a redirect (${response.status}), and Loom follows none`);
    }
    return response;
  };
}
