import type { ServerCallContext } from "@a2a-js/sdk/server";
import type { Request } from "express";

/**
 * The A2A caller: its bearer token is not checked here but carried to acp-policy with every run it
 * starts or answers, which verifies it; the HTTP edge refuses requests that bring none.
 */
export class BearerUser {
  readonly token: string;

  constructor(token: string) {
    this.token = token;
  }

  get isAuthenticated(): boolean {
    return true;
  }

  get userName(): string {
    return "bearer";
  }
}

/** The bearer token of a request, if it has one. */
export function bearerToken(req: Pick<Request, "headers">): string | undefined {
  const header = req.headers.authorization;
  const match = typeof header === "string" ? /^Bearer\s+(\S+)$/i.exec(header) : null;
  return match?.[1];
}

export async function userOf(req: Request): Promise<BearerUser> {
  return new BearerUser(bearerToken(req) ?? "");
}

/** The `Authorization` header to forward on the bus for this call. */
export function bearerOf(context: ServerCallContext): string | undefined {
  const user = context.user;
  return user instanceof BearerUser && user.token !== "" ? `Bearer ${user.token}` : undefined;
}
