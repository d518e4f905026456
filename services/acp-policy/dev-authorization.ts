import { createHash, timingSafeEqual } from "node:crypto";
import { readFile } from "node:fs/promises";
import { parse as parseYaml } from "yaml";
import {
  type DevClient,
  DevClientsFileSchema,
  type DevJwksReply,
  type DevTokenReply,
  type DevTokenRequest,
  OAUTH_ERROR_DETAIL,
} from "../../schemas/dev-authorization.ts";
import { ErrorCode } from "../../schemas/errors.ts";
import { type DevIssuerKey, issueDevToken } from "../kit/dev-issuer.ts";
import { describeIssues, type Logger, LoomError } from "../kit/index.ts";

/** How long a token from the development token endpoint lasts, in seconds. */
export const DEV_TOKEN_TTL_SECONDS = 3_600;

/** Reads the dev clients file; a file that does not parse stops acp-policy with a clear error. */
export async function readDevClients(path: string): Promise<DevClient[]> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (error) {
    throw new LoomError(ErrorCode.CONFIG_INVALID, `LOOM_DEV_CLIENTS: cannot read ${path}`, { cause: error });
  }
  const parsed = DevClientsFileSchema.safeParse(parseYaml(text));
  if (!parsed.success) {
    throw new LoomError(
      ErrorCode.CONFIG_INVALID,
      `LOOM_DEV_CLIENTS: ${path} is not a dev clients file: ${describeIssues(parsed.error.issues)}`,
    );
  }
  return parsed.data.clients;
}

export interface DevAuthorizationOptions {
  /** The development signing key; undefined outside dev mode, where every request is refused. */
  key: DevIssuerKey | undefined;
  clients: readonly DevClient[];
  issuer: string;
  audience: string;
  log: Logger;
}

/**
 * The development authorization server's two answers: a client-credentials token for a
 * configured client (RFC 6749 section 4.4), and the public keys that verify it. Outside dev mode
 * both are refused, so no configuration mistake turns it into a way around a real identity
 * provider. Secrets are compared in constant time, and an unknown client costs the same compare.
 */
export class DevAuthorization {
  readonly #options: DevAuthorizationOptions;

  constructor(options: DevAuthorizationOptions) {
    this.#options = options;
  }

  async token(request: DevTokenRequest): Promise<DevTokenReply> {
    const key = this.#devKey();
    if (request.grantType !== "client_credentials") {
      throw oauthError(
        request.grantType === undefined ? "invalid_request" : "unsupported_grant_type",
        request.grantType === undefined
          ? "grant_type is required"
          : `grant type "${request.grantType}" is not supported; this server issues client_credentials tokens only`,
        ErrorCode.INVALID_INPUT,
      );
    }
    const client = this.#authenticate(request.clientId, request.clientSecret);
    const accessToken = await issueDevToken(key, {
      sub: client.subject,
      roles: client.roles,
      attributes: client.attributes,
      ttlSeconds: DEV_TOKEN_TTL_SECONDS,
      issuer: this.#options.issuer,
      audience: this.#options.audience,
    });
    this.#options.log.info(
      { client_id: client.clientId, sub: client.subject, roles: client.roles },
      "development token issued by client credentials",
    );
    return { accessToken, tokenType: "Bearer", expiresIn: DEV_TOKEN_TTL_SECONDS };
  }

  jwks(): DevJwksReply {
    return { keys: this.#devKey().jwks.keys.map((jwk) => ({ ...jwk })) };
  }

  #devKey(): DevIssuerKey {
    if (this.#options.key === undefined) {
      throw new LoomError(
        ErrorCode.DEV_MODE_ONLY,
        "the development authorization server runs only in dev mode (no LOOM_AUTH_JWKS_URL or LOOM_AUTH_PUBLIC_KEYS); get tokens from your identity provider",
      );
    }
    return this.#options.key;
  }

  #authenticate(clientId: string | undefined, secret: string | undefined): DevClient {
    if (clientId === undefined || secret === undefined) {
      throw oauthError("invalid_client", "client authentication is required (client_id and client_secret)");
    }
    const client = this.#options.clients.find((each) => each.clientId === clientId);
    // An unknown client is compared against a secret of its own, so timing tells it from a wrong one not at all.
    const matches = sameSecret(client?.clientSecret ?? `unknown client ${clientId}`, secret);
    if (client === undefined || !matches) {
      this.#options.log.warn(
        { client_id: clientId },
        "development token refused: unknown client or wrong secret",
      );
      throw oauthError("invalid_client", "unknown client or wrong client secret");
    }
    return client;
  }
}

/** Compares digests, which have one length, so neither length nor content leaks through timing. */
function sameSecret(expected: string, given: string): boolean {
  const digest = (text: string) => createHash("sha256").update(text, "utf8").digest();
  return timingSafeEqual(digest(expected), digest(given));
}

function oauthError(
  error: string,
  description: string,
  code: ErrorCode = ErrorCode.UNAUTHENTICATED,
): LoomError {
  return new LoomError(code, description, { details: { [OAUTH_ERROR_DETAIL]: error } });
}
