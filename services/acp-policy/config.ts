import { resolve } from "node:path";
import { z } from "zod";
import { DurationSchema } from "../../schemas/duration.ts";
import { DEFAULT_AUDIENCE, DEV_ISSUER } from "../kit/dev-issuer.ts";
import { BaseConfigSchema, loadConfig, unsetWhenEmpty } from "../kit/index.ts";
import type { TokenVerifierOptions } from "./token-verifier.ts";

const REPO_ROOT = resolve(import.meta.dirname, "../..");

const list = (fallback: string) =>
  z
    .string()
    .default(fallback)
    .transform((text) =>
      text
        .split(",")
        .map((item) => item.trim())
        .filter((item) => item !== ""),
    );

/** Signature algorithms a token may use: asymmetric only, so a public key can never act as an HMAC secret. */
const ALGORITHMS = [
  "EdDSA",
  "ES256",
  "ES384",
  "ES512",
  "RS256",
  "RS384",
  "RS512",
  "PS256",
  "PS384",
  "PS512",
] as const;

export const PolicyServiceConfigSchema = BaseConfigSchema.extend({
  LOOM_POLICY_DIR: z
    .string()
    .default(resolve(REPO_ROOT, "infra/policies"))
    .describe(
      "Folder of policy YAML files; used until `loom policy apply` stores a bundle in KV `loom_policy`, which then wins.",
    ),
  LOOM_DATA_DIR: z
    .string()
    .default(resolve(REPO_ROOT, ".loom"))
    .describe("Local data folder; in dev mode (no JWKS configured) the token signing key is generated here."),
  LOOM_AUTH_JWKS_URL: unsetWhenEmpty(z.url().optional()).describe(
    "JWKS URL of the identity provider: keys are cached and fetched again for an unknown `kid`.",
  ),
  LOOM_AUTH_PUBLIC_KEYS: unsetWhenEmpty(z.string().optional()).describe(
    "A JWKS file of trusted public keys, instead of a URL. With neither, acp-policy runs in dev mode.",
  ),
  LOOM_AUTH_ISSUER: z.string().min(1).default(DEV_ISSUER).describe("The `iss` every token must carry."),
  LOOM_DEV_CLIENTS: unsetWhenEmpty(z.string().optional()).describe(
    "Dev mode only: a YAML or JSON file of OAuth clients (`clients: [{clientId, clientSecret, subject, roles, attributes}]`) the MCP gateway's token endpoint issues client-credentials tokens to. Ignored (the endpoint refuses) when a JWKS is configured.",
  ),
  LOOM_AUTH_AUDIENCE: z
    .string()
    .min(1)
    .default(DEFAULT_AUDIENCE)
    .describe("The `aud` every token must carry."),
  LOOM_AUTH_ALGORITHMS: list("EdDSA,ES256,RS256")
    .pipe(z.array(z.enum(ALGORITHMS)).min(1))
    .describe(
      `Accepted signature algorithms, comma-separated; only asymmetric ones can be named (${ALGORITHMS.join(", ")}).`,
    ),
  LOOM_AUTH_ROLES_CLAIM: z
    .string()
    .min(1)
    .default("roles")
    .describe("Claim holding the roles; a dotted path reaches into objects (`realm_access.roles`)."),
  LOOM_AUTH_ATTRIBUTE_CLAIMS: list("region").describe(
    "Claims copied into the principal's attributes (policy `attributes`, CEL `principal.attributes`), comma-separated.",
  ),
  LOOM_AUTH_CLOCK_SKEW: DurationSchema.prefault("30s").describe(
    "Allowed clock difference for `exp` and `nbf`.",
  ),
  LOOM_REGION: z
    .string()
    .min(1)
    .default("eu")
    .describe("The region callers are in when their token names none; destination of data-residency rules."),
  LOOM_RUN_TOKEN_TTL: DurationSchema.prefault("24h").describe(
    "How long a run may keep deciding its steps after it started, whatever its caller's token said: the run token's lifetime. Only the orchestrator can present one, for its own run.",
  ),
  LOOM_GRANT_TTL: DurationSchema.refine((ms) => ms <= 10 * 60_000, {
    message: "at most 10m: a used grant is remembered for 30 min, and must not outlive that",
  })
    .prefault("60s")
    .describe(
      "How long a signed grant stays valid: only until the worker receives the task. At most 10m: workers remember a used grant for 30 min (`loom_grant_uses`), so none is used twice.",
    ),
  LOOM_ANOMALY_BURST: z.coerce
    .number()
    .int()
    .positive()
    .default(20)
    .describe("Calls by one principal within 10 s that count as a burst when also 5x its usual rate."),
});
export type PolicyServiceConfig = z.infer<typeof PolicyServiceConfigSchema>;

export function readPolicyServiceConfig(env: NodeJS.ProcessEnv = process.env): PolicyServiceConfig {
  return loadConfig(PolicyServiceConfigSchema, env);
}

/** Whether acp-policy runs in dev mode: no identity provider configured, its own signing key. */
export function isDevMode(config: PolicyServiceConfig): boolean {
  return config.LOOM_AUTH_JWKS_URL === undefined && config.LOOM_AUTH_PUBLIC_KEYS === undefined;
}

/** Where tokens are verified from: a JWKS URL, a JWKS file, or else the dev issuer key in the data dir. */
export function tokenVerifierOptions(config: PolicyServiceConfig): TokenVerifierOptions {
  const keys =
    config.LOOM_AUTH_JWKS_URL !== undefined
      ? { jwksUrl: config.LOOM_AUTH_JWKS_URL }
      : config.LOOM_AUTH_PUBLIC_KEYS !== undefined
        ? { jwksFile: config.LOOM_AUTH_PUBLIC_KEYS }
        : { devDataDir: config.LOOM_DATA_DIR };
  return {
    keys,
    issuer: config.LOOM_AUTH_ISSUER,
    audience: config.LOOM_AUTH_AUDIENCE,
    algorithms: config.LOOM_AUTH_ALGORITHMS,
    rolesClaim: config.LOOM_AUTH_ROLES_CLAIM,
    attributeClaims: config.LOOM_AUTH_ATTRIBUTE_CLAIMS,
    clockSkewMs: config.LOOM_AUTH_CLOCK_SKEW,
  };
}
