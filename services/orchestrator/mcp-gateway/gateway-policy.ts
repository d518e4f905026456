import type { NatsConnection } from "@nats-io/transport-node";
import { PolicyAuthenticateContract, PolicyPermittedContract } from "../../../schemas/contracts.ts";
import type { Principal } from "../../../schemas/policy.ts";
import type { PermittedRequest } from "../../../schemas/policy-gateway.ts";
import { Headers, Subjects } from "../../../schemas/subjects.ts";
import { request } from "../../kit/index.ts";

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
  async authenticate(authorization: string): Promise<Principal> {
    const reply = await request(
      this.#nc,
      Subjects.POLICY_AUTHENTICATE,
      PolicyAuthenticateContract,
      {},
      { timeoutMs: this.#timeoutMs, headers: { [Headers.AUTHORIZATION]: authorization } },
    );
    return reply.principal;
  }

  /** For each check, whether policy could allow it: a dry run that grants and audits nothing. */
  async permitted(authorization: string, checks: PermittedRequest["checks"]): Promise<boolean[]> {
    if (checks.length === 0) return [];
    const reply = await request(
      this.#nc,
      Subjects.POLICY_PERMITTED,
      PolicyPermittedContract,
      { checks },
      { timeoutMs: this.#timeoutMs, headers: { [Headers.AUTHORIZATION]: authorization } },
    );
    return reply.allowed;
  }
}
