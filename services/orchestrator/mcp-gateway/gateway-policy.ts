import type { NatsConnection } from "@nats-io/transport-node";
import type { Principal } from "../../../schemas/policy.ts";
import type { PermittedRequest } from "../../../schemas/policy-gateway.ts";
import { authenticate, permitted } from "../../kit/index.ts";

/**
 * What the gateway asks acp-policy besides decisions: who a bearer token belongs to, and which
 * operations a listing may show. The token goes to acp-policy only, never to an MCP server.
 */
export class GatewayPolicy {
  readonly #nc: NatsConnection;
  readonly #timeoutMs: number;

  constructor(nc: NatsConnection, timeoutMs: number) {
    this.#nc = nc;
    this.#timeoutMs = timeoutMs;
  }

  /** The token's principal; a LoomError UNAUTHENTICATED when acp-policy refuses the token. */
  authenticate(authorization: string): Promise<Principal> {
    return authenticate(this.#nc, authorization, this.#timeoutMs);
  }

  /** For each check, whether policy could allow it: a dry run that grants and audits nothing. */
  permitted(authorization: string, checks: PermittedRequest["checks"]): Promise<boolean[]> {
    return permitted(this.#nc, authorization, checks, this.#timeoutMs);
  }
}
