import { z } from "zod";

/**
 * What the MCP gateway's client answers itself during a gateway tool call, as the gateway puts it
 * in the worker task's metadata: a flag per server request, true when the client declared that
 * capability at initialize (the worker refuses the server's request otherwise). Without it (every
 * workflow step) the worker answers as it always does: sampling by the `llm` agent, elicitation by
 * the run's input-required state.
 */
export const ClientRelaySchema = z.object({
  sampling: z.boolean().default(false),
  elicitation: z.boolean().default(false),
});
export type ClientRelay = z.infer<typeof ClientRelaySchema>;

export const RelayedMethod = {
  SAMPLING: "sampling/createMessage",
  ELICITATION: "elicitation/create",
} as const;
export type RelayedMethod = (typeof RelayedMethod)[keyof typeof RelayedMethod];

/**
 * A server's request during a gateway tool call, sent by the worker on
 * `loom.v1.mcp.tasks.<taskId>.server-requests` to the gateway replica running that call. Params
 * pass through as the server sent them; the gateway's client validates them as MCP says.
 */
export const ServerRequestRelaySchema = z.object({
  method: z.enum(RelayedMethod),
  server: z.string().min(1),
  params: z.record(z.string(), z.unknown()),
});
export type ServerRequestRelay = z.infer<typeof ServerRequestRelaySchema>;

/** The gateway client's result (a CreateMessageResult or an ElicitResult), as the client gave it. */
export const ServerRequestAnswerSchema = z.record(z.string(), z.unknown());
export type ServerRequestAnswer = z.infer<typeof ServerRequestAnswerSchema>;
