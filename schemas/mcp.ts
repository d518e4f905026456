import { z } from "zod";
import { DurationSchema } from "./duration.ts";
import { McpAuthSchema } from "./mcp-auth.ts";
import { McpCacheConfigSchema } from "./mcp-cache.ts";
import { ClientRelaySchema } from "./mcp-client-relay.ts";
import { GatewayExposureSchema } from "./mcp-gateway-exposure.ts";
import { McpResilienceFields, mcpVersionsSchema } from "./mcp-resilience.ts";
import { SlugSchema } from "./workflow.ts";

export const DataClassification = {
  PUBLIC: "public",
  INTERNAL: "internal",
  RESTRICTED: "restricted",
} as const;
export type DataClassification = (typeof DataClassification)[keyof typeof DataClassification];

/** Who answers for a server and how sensitive its data is. A server without it is refused. */
export const GovernanceSchema = z
  .object({
    owner: z.string().min(1),
    data_classification: z.enum(DataClassification),
    access_level: z.enum(["read", "write", "admin"]),
    /** The server runs commands: policy can hold its arguments to stricter guards. */
    exec: z.boolean().optional(),
    /** Where the server's data lives (for example `eu`), for data-residency rules. */
    region: z.string().min(1).optional(),
  })
  .strict();
export type Governance = z.infer<typeof GovernanceSchema>;

export const StdioTransportSchema = z
  .object({
    type: z.literal("stdio"),
    /** `node` means the Node.js that runs Loom itself. */
    command: z.string().min(1),
    args: z.array(z.string()).default([]),
    /** The only environment the server gets besides a minimal PATH/HOME. */
    env: z.record(z.string(), z.string()).default({}),
    /** Working directory, relative to the config file. */
    cwd: z.string().optional(),
  })
  .strict();

export const HttpTransportSchema = z
  .object({
    type: z.literal("http"),
    url: z.url(),
    headers: z.record(z.string(), z.string()).default({}),
  })
  .strict();

/** MCP over WebSocket (subprotocol `mcp`), as the SDK's WebSocket client speaks it. */
export const WebSocketTransportSchema = z
  .object({
    type: z.literal("websocket"),
    url: z.url({ protocol: /^wss?$/ }),
    headers: z.record(z.string(), z.string()).default({}),
  })
  .strict();

/** How the worker reaches a server (or one version of it). */
export const McpTransportSchema = z.discriminatedUnion("type", [
  StdioTransportSchema,
  HttpTransportSchema,
  WebSocketTransportSchema,
]);

export const McpServerConfigSchema = z
  .object({
    name: SlugSchema,
    description: z.string().optional(),
    transport: McpTransportSchema,
    /** Credentials for a remote (http or websocket) server; secrets come from named env variables. */
    auth: McpAuthSchema.optional(),
    /** Longest a single call may take. */
    timeout: DurationSchema.default(30_000),
    governance: GovernanceSchema,
    /** How the MCP gateway names this server's tools, prompts and resources. */
    gateway: GatewayExposureSchema.optional(),
    /** Reads the worker may answer from memory for a while (see schemas/mcp-cache.ts). */
    cache: McpCacheConfigSchema.optional(),
    /** Retries, circuit breaker, concurrency limit, restarts and replicas (schemas/mcp-resilience.ts). */
    ...McpResilienceFields,
    /** A/B: weighted shares of the calls go to other versions of the server. */
    versions: mcpVersionsSchema(McpTransportSchema).optional(),
  })
  .strict();
export type McpServerConfig = z.infer<typeof McpServerConfigSchema>;

/** `infra/mcp-servers.yaml`. Each server is validated on its own so one bad entry refuses only itself. */
export const McpServersFileSchema = z
  .object({
    servers: z.array(z.unknown()),
  })
  .strict();

/** A tool as recorded in KV `loom_tools` under `<server>.<tool>`. */
export const ToolDescriptorSchema = z.object({
  server: z.string(),
  name: z.string(),
  title: z.string().optional(),
  description: z.string().optional(),
  inputSchema: z.record(z.string(), z.unknown()),
  outputSchema: z.record(z.string(), z.unknown()).optional(),
  annotations: z.record(z.string(), z.unknown()).optional(),
  governance: GovernanceSchema,
  updatedAt: z.iso.datetime(),
});
export type ToolDescriptor = z.infer<typeof ToolDescriptorSchema>;

/** The DataPart of an A2A task asking the MCP worker to call one tool. */
export const ToolCallSchema = z
  .object({
    server: z.string().min(1),
    tool: z.string().min(1),
    arguments: z.record(z.string(), z.unknown()).default({}),
  })
  .strict();
export type ToolCall = z.infer<typeof ToolCallSchema>;

/** The DataPart of an A2A task asking the MCP worker to read one resource. */
export const ResourceReadSchema = z
  .object({ server: z.string().min(1), resource: z.string().min(1) })
  .strict();
export type ResourceRead = z.infer<typeof ResourceReadSchema>;

/**
 * The DataPart of an A2A task asking the MCP worker to subscribe to (or unsubscribe from) one
 * resource's updates on behalf of the task's run (an MCP gateway session). Granted like a read.
 */
export const ResourceSubscriptionSchema = z
  .object({
    server: z.string().min(1),
    resource: z.string().min(1),
    subscription: z.enum(["subscribe", "unsubscribe"]),
  })
  .strict();
export type ResourceSubscription = z.infer<typeof ResourceSubscriptionSchema>;

/** What a subscription's grant binds: which of the two it is, so a read grant cannot subscribe. */
export function subscriptionGrantArguments(operation: ResourceSubscription): Record<string, unknown> {
  return { subscription: operation.subscription };
}

/** An upstream server's `notifications/resources/updated`, as the worker publishes it. */
export const ResourceUpdatedSchema = z.object({ server: z.string().min(1), uri: z.string().min(1) }).strict();
export type ResourceUpdated = z.infer<typeof ResourceUpdatedSchema>;

/** The DataPart of an A2A task asking the MCP worker to render one prompt. */
export const PromptGetSchema = z
  .object({
    server: z.string().min(1),
    prompt: z.string().min(1),
    arguments: z.record(z.string(), z.string()).default({}),
  })
  .strict();
export type PromptGet = z.infer<typeof PromptGetSchema>;

/**
 * The DataPart of an A2A task asking the MCP worker for completions (`completion/complete`) of one
 * argument of a prompt or a resource template.
 */
export const CompletionCompleteSchema = z
  .object({
    server: z.string().min(1),
    complete: z
      .object({
        ref: z.discriminatedUnion("type", [
          z.object({ type: z.literal("ref/prompt"), name: z.string().min(1) }).strict(),
          z.object({ type: z.literal("ref/resource"), uri: z.string().min(1) }).strict(),
        ]),
        argument: z.object({ name: z.string(), value: z.string() }).strict(),
        context: z
          .object({ arguments: z.record(z.string(), z.string()).optional() })
          .strict()
          .optional(),
      })
      .strict(),
  })
  .strict();
export type CompletionComplete = z.infer<typeof CompletionCompleteSchema>;

/**
 * What a completion's grant binds: the argument being completed and the arguments around it. A
 * completion is granted like what it completes (`prompts.get` of the prompt, `resources.read` of
 * the template), so the gateway that asks and the worker that checks must agree on this.
 */
export function completionGrantArguments(operation: CompletionComplete): Record<string, unknown> {
  const { argument, context } = operation.complete;
  return { argument, ...(context?.arguments === undefined ? {} : { context: context.arguments }) };
}

/** Everything the MCP worker takes as an A2A task. */
export const McpOperationSchema = z.union([
  ToolCallSchema,
  ResourceReadSchema,
  ResourceSubscriptionSchema,
  PromptGetSchema,
  CompletionCompleteSchema,
]);
export type McpOperation = z.infer<typeof McpOperationSchema>;

/** A2A task metadata that ties a tool call to its run and step. */
export const ToolCallMetadataSchema = z.object({
  runId: z.string(),
  stepId: z.string(),
  /** 1-based; a re-dispatch of the same attempt gets its stored outcome instead of a new call. */
  attempt: z.number().int().positive().default(1),
  timeoutMs: z.number().int().positive().optional(),
  /** The signed grant acp-policy issued for exactly this call; the worker refuses a task without one. */
  grant: z.string().optional(),
  /** Set by the MCP gateway: the server requests its client answers itself (see mcp-client-relay.ts). */
  clientRelay: ClientRelaySchema.optional(),
});
export type ToolCallMetadata = z.infer<typeof ToolCallMetadataSchema>;

/** Splits `crm.get_contact` into server `crm` and tool `get_contact` (tool names may contain dots). */
export function splitToolName(qualified: string): { server: string; tool: string } {
  const dot = qualified.indexOf(".");
  return { server: qualified.slice(0, dot), tool: qualified.slice(dot + 1) };
}

/**
 * One notification an MCP server sent while working on an A2A task, as the worker publishes it on
 * `loom.v1.tasks.<taskId>.notifications`.
 */
export const TaskNotificationSchema = z.discriminatedUnion("kind", [
  z.object({
    kind: z.literal("progress"),
    taskId: z.string(),
    runId: z.string().optional(),
    stepId: z.string().optional(),
    progress: z.number(),
    total: z.number().optional(),
    message: z.string().optional(),
  }),
  z.object({
    kind: z.literal("log"),
    taskId: z.string(),
    runId: z.string().optional(),
    stepId: z.string().optional(),
    level: z.enum(["debug", "info", "notice", "warning", "error", "critical", "alert", "emergency"]),
    logger: z.string().optional(),
    data: z.unknown(),
  }),
]);
export type TaskNotification = z.infer<typeof TaskNotificationSchema>;
