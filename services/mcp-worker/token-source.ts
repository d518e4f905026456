import type { FetchLike } from "@modelcontextprotocol/sdk/shared/transport.js";
import { z } from "zod";
import { ErrorCode } from "../../schemas/errors.ts";
import type { McpAuth } from "../../schemas/mcp-auth.ts";
import { type Logger, LoomError } from "../kit/index.ts";

/** Share of a token's lifetime after which it is replaced, so no call goes out with one about to expire. */
const REFRESH_AT_SHARE = 0.8;
const TOKEN_REQUEST_TIMEOUT_MS = 10_000;

/** Where the worker gets the access token it presents to one remote MCP server. */
export interface TokenSource {
  /** A token that is not near its expiry; fetched (once, however many calls ask) when needed. */
  token(): Promise<string>;
  /** Forgets the cached token because the server refused it; the next `token()` gets a new one. */
  invalidate(): void;
}

/** `{type: bearer}`: a fixed token. A refused one cannot be renewed, so `invalidate` changes nothing. */
export function staticToken(value: string): TokenSource {
  return { token: () => Promise.resolve(value), invalidate: () => undefined };
}

const TokenResponseSchema = z.object({
  access_token: z.string().min(1),
  token_type: z.string().regex(/^bearer$/i, "token_type must be Bearer"),
  expires_in: z.coerce.number().positive().optional(),
});

const TokenErrorSchema = z.object({ error: z.string(), error_description: z.string().optional() });

export interface ClientCredentialsOptions {
  server: string;
  log: Logger;
  now?: () => number;
}

/**
 * OAuth 2.0 client credentials (RFC 6749 section 4.4) against the configured token endpoint. The
 * SDK's ClientCredentialsProvider is not used: it discovers the authorization server through the
 * MCP server's metadata and only works inside the Streamable HTTP transport, while Loom's config
 * names the token endpoint and the WebSocket transport needs the same token.
 */
export class ClientCredentialsTokens implements TokenSource {
  readonly #auth: Extract<McpAuth, { type: "client_credentials" }>;
  readonly #secret: string;
  readonly #options: ClientCredentialsOptions;
  #cached: { value: string; refreshAt: number } | undefined;
  #pending: Promise<string> | undefined;

  constructor(
    auth: Extract<McpAuth, { type: "client_credentials" }>,
    secret: string,
    options: ClientCredentialsOptions,
  ) {
    this.#auth = auth;
    this.#secret = secret;
    this.#options = options;
  }

  token(): Promise<string> {
    const now = this.#options.now ?? Date.now;
    if (this.#cached !== undefined && now() < this.#cached.refreshAt)
      return Promise.resolve(this.#cached.value);
    this.#pending ??= this.#request().finally(() => {
      this.#pending = undefined;
    });
    return this.#pending;
  }

  invalidate(): void {
    this.#cached = undefined;
  }

  async #request(): Promise<string> {
    const auth = this.#auth;
    const body = new URLSearchParams({ grant_type: "client_credentials" });
    if (auth.scope !== undefined) body.set("scope", auth.scope);
    if (auth.audience !== undefined) {
      body.set("audience", auth.audience);
      body.set("resource", auth.audience);
    }
    const headers: Record<string, string> = {
      "content-type": "application/x-www-form-urlencoded",
      accept: "application/json",
    };
    if (auth.clientAuthentication === "client_secret_basic") {
      // RFC 6749 section 2.3.1: both parts are form-encoded before Base64.
      const pair = `${encodeURIComponent(auth.clientId)}:${encodeURIComponent(this.#secret)}`;
      headers.authorization = `Basic ${Buffer.from(pair).toString("base64")}`;
    } else {
      body.set("client_id", auth.clientId);
      body.set("client_secret", this.#secret);
    }
    const started = (this.#options.now ?? Date.now)();
    let response: Response;
    try {
      response = await fetch(auth.tokenUrl, {
        method: "POST",
        headers,
        body,
        signal: AbortSignal.timeout(TOKEN_REQUEST_TIMEOUT_MS),
      });
    } catch (cause) {
      throw new LoomError(
        ErrorCode.SERVER_UNAVAILABLE,
        `MCP server "${this.#options.server}": cannot reach token endpoint ${auth.tokenUrl}: ${cause instanceof Error ? cause.message : String(cause)}`,
        { cause },
      );
    }
    const payload: unknown = await response.json().catch(() => undefined);
    if (!response.ok) {
      const refusal = TokenErrorSchema.safeParse(payload).data;
      const reason =
        refusal === undefined
          ? `HTTP ${response.status}`
          : `${refusal.error}${refusal.error_description === undefined ? "" : ` (${refusal.error_description})`}`;
      throw new LoomError(
        response.status >= 500 ? ErrorCode.SERVER_UNAVAILABLE : ErrorCode.SERVER_AUTH_FAILED,
        `MCP server "${this.#options.server}": token endpoint ${auth.tokenUrl} refused client "${auth.clientId}": ${reason}; check auth.clientId and the secret in ${auth.clientSecretEnv}`,
      );
    }
    const parsed = TokenResponseSchema.safeParse(payload);
    if (!parsed.success) {
      throw new LoomError(
        ErrorCode.SERVER_AUTH_FAILED,
        `MCP server "${this.#options.server}": token endpoint ${auth.tokenUrl} answered without a usable bearer token`,
      );
    }
    const { access_token: value, expires_in: expiresIn } = parsed.data;
    const refreshAt =
      expiresIn === undefined ? Number.POSITIVE_INFINITY : started + expiresIn * 1000 * REFRESH_AT_SHARE;
    this.#cached = { value, refreshAt };
    this.#options.log.info(
      { mcp_server: this.#options.server, expires_in_s: expiresIn },
      "access token obtained for MCP server",
    );
    return value;
  }
}

/** The token source an auth block describes, with its secret already read from the environment. */
export function tokenSourceFor(
  auth: McpAuth,
  secret: string,
  options: ClientCredentialsOptions,
): TokenSource {
  return auth.type === "bearer" ? staticToken(secret) : new ClientCredentialsTokens(auth, secret, options);
}

/**
 * `fetch` for the Streamable HTTP transport that sends the current token and, when the server
 * answers 401 (it revoked or expired the token early), fetches a new one and tries once more.
 */
export function authorizedFetch(tokens: TokenSource, server: string): FetchLike {
  const send = async (url: string | URL, init: RequestInit | undefined): Promise<Response> => {
    const headers = new Headers(init?.headers);
    headers.set("authorization", `Bearer ${await tokens.token()}`);
    return fetch(url, { ...init, headers });
  };
  return async (url, init) => {
    const first = await send(url, init);
    if (first.status !== 401) return first;
    await first.body?.cancel();
    tokens.invalidate();
    const second = await send(url, init);
    if (second.status !== 401) return second;
    await second.body?.cancel();
    throw new LoomError(
      ErrorCode.SERVER_AUTH_FAILED,
      `MCP server "${server}" refused the worker's access token (HTTP 401), a renewed one too; check its auth config`,
    );
  };
}
