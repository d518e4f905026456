import { type AgentCard, AgentCard as AgentCardCodec } from "@a2a-js/sdk";
import type { Workflow } from "../../../schemas/workflow.ts";

export const A2A_JSONRPC_PATH = "/a2a/jsonrpc";
export const A2A_REST_PATH = "/a2a/rest";

/**
 * Loom's Agent Card: one skill per registered workflow (latest version), streaming, and bearer
 * tokens (OAuth 2.0 access tokens) required on every call.
 */
export function buildAgentCard(options: {
  publicUrl: string;
  workflows: Workflow[];
  version: string;
}): AgentCard {
  const base = options.publicUrl.replace(/\/$/, "");
  return AgentCardCodec.fromJSON({
    name: "Loom",
    description: "Runs Loom workflows: multi-step, policy-checked MCP tool use. Each skill is a workflow.",
    version: options.version,
    supportedInterfaces: [
      { url: `${base}${A2A_JSONRPC_PATH}`, protocolBinding: "JSONRPC", protocolVersion: "1.0" },
      { url: `${base}${A2A_REST_PATH}`, protocolBinding: "HTTP+JSON", protocolVersion: "1.0" },
    ],
    provider: { organization: "Loom", url: base },
    capabilities: { streaming: true, pushNotifications: true },
    securitySchemes: {
      bearer: {
        httpAuthSecurityScheme: {
          scheme: "Bearer",
          bearerFormat: "JWT",
          description: "OAuth 2.0 access token",
        },
      },
    },
    securityRequirements: [{ schemes: { bearer: { list: [] } } }],
    defaultInputModes: ["application/json", "text/plain"],
    defaultOutputModes: ["application/json"],
    skills: options.workflows.map((workflow) => ({
      id: workflow.id,
      name: workflow.id,
      description: workflow.description ?? `Runs the ${workflow.id} workflow (version ${workflow.version}).`,
      tags: ["workflow"],
      examples: exampleOf(workflow),
      inputModes: ["application/json"],
      outputModes: ["application/json"],
    })),
  });
}

/** The workflow file's `examples`, else one built from its input schema's required properties. */
function exampleOf(workflow: Workflow): string[] {
  if (workflow.examples !== undefined) return workflow.examples.map((example) => JSON.stringify(example));
  const properties = (workflow.input?.properties ?? {}) as Record<string, { description?: string }>;
  const required = (workflow.input?.required ?? []) as string[];
  if (required.length === 0) return [];
  const example = Object.fromEntries(
    required.map((name) => [name, properties[name]?.description ?? `<${name}>`]),
  );
  return [JSON.stringify(example)];
}
