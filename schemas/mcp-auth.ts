import { z } from "zod";

/** An environment variable's name: config names where a secret lives, never the secret itself. */
const EnvNameSchema = z
  .string()
  .regex(/^[A-Za-z_][A-Za-z0-9_]*$/, "an environment variable name (letters, digits, _)");

/** A fixed bearer token, read from the worker's environment. */
export const BearerAuthSchema = z
  .object({
    type: z.literal("bearer"),
    /** The variable holding the token, for example `CRM_TOKEN`. */
    tokenEnv: EnvNameSchema,
  })
  .strict();

/** OAuth 2.0 client credentials grant (RFC 6749 section 4.4) against a configured token endpoint. */
export const ClientCredentialsAuthSchema = z
  .object({
    type: z.literal("client_credentials"),
    tokenUrl: z.url(),
    clientId: z.string().min(1),
    /** The variable holding the client secret. */
    clientSecretEnv: EnvNameSchema,
    scope: z.string().min(1).optional(),
    /** Sent as `audience` (and `resource`, RFC 8707) so the token is bound to this server. */
    audience: z.string().min(1).optional(),
    /** How the client authenticates to the token endpoint; Basic is the one every server must take. */
    clientAuthentication: z
      .enum(["client_secret_basic", "client_secret_post"])
      .default("client_secret_basic"),
  })
  .strict();

/** How the worker authenticates to a remote (http or websocket) MCP server. */
export const McpAuthSchema = z.discriminatedUnion("type", [BearerAuthSchema, ClientCredentialsAuthSchema]);
export type McpAuth = z.infer<typeof McpAuthSchema>;
