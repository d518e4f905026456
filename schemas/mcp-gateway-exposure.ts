import { z } from "zod";

/**
 * How the MCP gateway names one server's tools, prompts, resources and templates. By default each
 * is `<server>.<name>`; a prefix replaces `<server>.` (an empty one exposes the names as they are,
 * which suits a single fronted server whose clients expect its own names).
 */
export const GatewayExposureSchema = z
  .object({
    prefix: z
      .string()
      .regex(/^[A-Za-z0-9_.-]{0,64}$/, "use up to 64 of A-Z a-z 0-9 _ - .")
      .optional(),
  })
  .strict();
export type GatewayExposure = z.infer<typeof GatewayExposureSchema>;
