import { ErrorCode } from "../../schemas/errors.ts";
import { type DevTokenClaims, DevTokenClaimsSchema, type Principal } from "../../schemas/policy.ts";
import { describeIssues, LoomError } from "./errors.ts";

const PREFIX = "loom-dev.";

/** Encodes a development token for `sub` holding `roles`. */
export function issueDevToken(claims: DevTokenClaims): string {
  const valid = DevTokenClaimsSchema.parse(claims);
  return PREFIX + Buffer.from(JSON.stringify(valid)).toString("base64url");
}

/** Reads the principal from an `Authorization: Bearer loom-dev.…` header value. */
export function principalFromAuthorization(authorization: string | undefined): Principal {
  if (authorization === undefined || authorization === "") {
    throw new LoomError(ErrorCode.UNAUTHENTICATED, "no token presented; pass --token or set LOOM_TOKEN");
  }
  const token = authorization.replace(/^Bearer\s+/i, "");
  if (!token.startsWith(PREFIX)) {
    throw new LoomError(ErrorCode.UNAUTHENTICATED, "unrecognised token; issue one with `loom token issue`");
  }
  let json: unknown;
  try {
    json = JSON.parse(Buffer.from(token.slice(PREFIX.length), "base64url").toString("utf8"));
  } catch (cause) {
    throw new LoomError(ErrorCode.UNAUTHENTICATED, "token is not readable", { cause });
  }
  const claims = DevTokenClaimsSchema.safeParse(json);
  if (!claims.success) {
    throw new LoomError(
      ErrorCode.UNAUTHENTICATED,
      `token claims are invalid: ${describeIssues(claims.error.issues)}`,
    );
  }
  return { id: claims.data.sub, roles: claims.data.roles };
}
