import { resolve } from "node:path";
import { DurationSchema } from "../../../schemas/duration.ts";
import { ErrorCode } from "../../../schemas/errors.ts";
import { ensureDevIssuerKey, issueDevToken } from "../../kit/dev-issuer.ts";
import { LoomError } from "../../kit/index.ts";
import { ExitCode } from "../exit-codes.ts";

/** The local data dir (`.loom/` in the checkout, gitignored) that acp-policy also uses in dev mode. */
export const DEFAULT_DATA_DIR = resolve(import.meta.dirname, "../../../.loom");

export interface TokenIssueOptions {
  sub: string;
  role: string[];
  ttl: string;
  region: string | undefined;
  /** Local data dir holding the development signing key (made on first use). */
  dataDir: string;
}

/** `loom token issue`: prints a development access token (JWT, EdDSA) signed with the local dev key. */
export async function tokenIssueCommand(options: TokenIssueOptions): Promise<ExitCode> {
  const ttl = DurationSchema.safeParse(options.ttl);
  if (!ttl.success || ttl.data < 1000) {
    throw new LoomError(ErrorCode.INVALID_INPUT, `--ttl ${options.ttl}: use a duration such as 15m or 1h`);
  }
  const key = await ensureDevIssuerKey(options.dataDir);
  const token = await issueDevToken(key, {
    sub: options.sub,
    roles: options.role,
    ...(options.region === undefined ? {} : { attributes: { region: options.region } }),
    ttlSeconds: Math.round(ttl.data / 1000),
  });
  console.log(token);
  return ExitCode.OK;
}
