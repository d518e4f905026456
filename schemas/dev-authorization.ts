import { z } from "zod";

/**
 * One client of the development authorization server: who it acts as when it presents its id and
 * secret (OAuth 2.0 client credentials). Only in dev mode; never a production identity provider.
 */
export const DevClientSchema = z
  .object({
    clientId: z.string().regex(/^[A-Za-z0-9._~-]{1,128}$/, "1-128 of A-Z a-z 0-9 . _ ~ -"),
    /** At least 16 characters: a dev secret is still a secret. */
    clientSecret: z.string().min(16),
    /** The token's `sub`. */
    subject: z.string().min(1),
    roles: z.array(z.string().min(1)).default([]),
    /** Extra claims such as `region`, as `loom token issue --attr` sets them. */
    attributes: z.record(z.string(), z.string()).default({}),
  })
  .strict();
export type DevClient = z.infer<typeof DevClientSchema>;

/** The file `LOOM_DEV_CLIENTS` names (YAML or JSON). Client ids are unique. */
export const DevClientsFileSchema = z
  .object({ clients: z.array(DevClientSchema) })
  .strict()
  .refine((file) => new Set(file.clients.map((client) => client.clientId)).size === file.clients.length, {
    message: "client ids must be unique",
  });
export type DevClientsFile = z.infer<typeof DevClientsFileSchema>;

/**
 * A token request the MCP gateway's token endpoint passes to acp-policy, which alone holds the
 * development key. Fields as the client sent them: acp-policy checks them all.
 */
export const DevTokenRequestSchema = z
  .object({
    grantType: z.string().optional(),
    clientId: z.string().optional(),
    clientSecret: z.string().optional(),
  })
  .strict();
export type DevTokenRequest = z.infer<typeof DevTokenRequestSchema>;

/** An issued access token (RFC 6749 section 5.1, camel-cased on the bus). */
export const DevTokenReplySchema = z
  .object({
    accessToken: z.string().min(1),
    tokenType: z.literal("Bearer"),
    expiresIn: z.number().int().positive(),
  })
  .strict();
export type DevTokenReply = z.infer<typeof DevTokenReplySchema>;

/** Asks for the development issuer's public keys; answered only in dev mode. */
export const DevJwksRequestSchema = z.object({}).strict();

/** The development issuer's public keys (a JWKS), so its tokens can be verified by anyone. */
export const DevJwksReplySchema = z.object({ keys: z.array(z.record(z.string(), z.unknown())) }).strict();
export type DevJwksReply = z.infer<typeof DevJwksReplySchema>;

/** The OAuth 2.0 error (RFC 6749 section 5.2) a refused token request maps to, in a WireError's details. */
export const OAUTH_ERROR_DETAIL = "oauthError";
