import { type AllowedPrefix, isUnder, prefixOf } from "./outbound-url.ts";

/**
 * `LOOM_A2A_OUTBOUND_CREDENTIALS`: the `Authorization` value for requests to remote agents, by URL
 * prefix, compared as allow-list entries are (parsed: scheme, host, port, whole path segments), so
 * `https://agent.example.com` does not match `https://agent.example.com.evil.test/`. Chosen by the
 * URL each request goes to, not the step's: a card naming an interface on another host does not
 * carry the first host's credentials there. The config checked every prefix.
 */
export class OutboundCredentials {
  readonly #entries: Array<{ prefix: AllowedPrefix; authorization: string }>;

  constructor(byPrefix: Record<string, string>) {
    this.#entries = Object.entries(byPrefix)
      .map(([prefix, authorization]) => ({ prefix: prefixOf(prefix), authorization }))
      // The most specific prefix wins.
      .sort((a, b) => b.prefix.segments.length - a.prefix.segments.length);
  }

  /** The `Authorization` value for a request to `url`, if a prefix covers it. */
  for(url: string): string | undefined {
    const parsed = new URL(url);
    return this.#entries.find((entry) => isUnder(parsed, entry.prefix))?.authorization;
  }

  /** `fetch` sending each request with the credentials its URL's prefix names. */
  attachTo(fetchImpl: typeof fetch): typeof fetch {
    return (input, init) => {
      const authorization = this.for(input instanceof Request ? input.url : String(input));
      if (authorization === undefined) return fetchImpl(input, init);
      const headers = new Headers(init?.headers);
      headers.set("authorization", authorization);
      return fetchImpl(input, { ...init, headers });
    };
  }
}
