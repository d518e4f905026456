import { Router } from "express";
import { type ConsoleConfig, type DevSignInReply, DevSignInRequestSchema } from "../../../schemas/console.ts";
import { ErrorCode } from "../../../schemas/errors.ts";
import { ensureDevIssuerKey, issueDevToken } from "../../kit/dev-issuer.ts";
import { LoomError } from "../../kit/index.ts";
import { handler, parse } from "./http.ts";
import type { ConsoleOptions } from "./options.ts";

/** How long a dev sign-in lasts: a working day. */
const DEV_TOKEN_TTL_SECONDS = 8 * 3_600;

/**
 * What the sign-in page needs before anyone signs in, and the dev sign-in: in dev mode only (the
 * stack trusts the dev signing key), a token for the subject and roles asked for, signed with that
 * key, as `loom token issue` does. With an identity provider configured there is no such route.
 */
export function signInRoutes(options: ConsoleOptions): Router {
  const router = Router();
  router.get("/config", (_req, res) => {
    res.json({
      devSignIn: options.devSignInDataDir !== undefined,
      jaegerUi: options.jaegerUi,
    } satisfies ConsoleConfig);
  });
  router.post(
    "/dev-sign-in",
    handler(options.log, async (req, res) => {
      const dataDir = options.devSignInDataDir;
      if (dataDir === undefined) {
        throw new LoomError(
          ErrorCode.POLICY_DENIED,
          "dev sign-in is off: this stack trusts an identity provider; sign in with one of its tokens",
        );
      }
      const body = parse(DevSignInRequestSchema, req.body, "dev sign-in");
      const token = await issueDevToken(await ensureDevIssuerKey(dataDir), {
        sub: body.subject,
        roles: body.roles,
        ttlSeconds: DEV_TOKEN_TTL_SECONDS,
      });
      const expiresAt = new Date(Date.now() + DEV_TOKEN_TTL_SECONDS * 1_000).toISOString();
      res.json({ token, expiresAt } satisfies DevSignInReply);
    }),
  );
  return router;
}
