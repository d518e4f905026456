import { type AgentCard, AgentCard as AgentCardCodec } from "@a2a-js/sdk";
import type { Workflow } from "../../../schemas/workflow.ts";
import type { JsonSchemaValidator } from "../../kit/index.ts";

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
  validator: JsonSchemaValidator;
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
      examples: exampleOf(workflow, options.validator),
      inputModes: ["application/json"],
      outputModes: ["application/json"],
    })),
  });
}

/**
 * The workflow file's `examples` its input schema accepts, else one made from its input schema's required properties (a
 * property's own `examples`, `default` or `const`, else a placeholder of its type), kept only when
 * the workflow's input schema accepts it: an example must be something a client can send.
 */
function exampleOf(workflow: Workflow, validator: JsonSchemaValidator): string[] {
  const input = workflow.input;
  const valid = (example: Record<string, unknown>) =>
    input === undefined || validator.check(input, example).valid;
  if (workflow.examples !== undefined) {
    return workflow.examples.filter(valid).map((example) => JSON.stringify(example));
  }
  const properties = (input?.properties ?? {}) as Record<string, PropertySchema>;
  const required = (input?.required ?? []) as string[];
  if (input === undefined || required.length === 0) return [];
  const example = Object.fromEntries(required.map((name) => [name, exampleValue(name, properties[name])]));
  return valid(example) ? [JSON.stringify(example)] : [];
}

interface PropertySchema {
  type?: string | string[];
  examples?: unknown[];
  default?: unknown;
  const?: unknown;
  enum?: unknown[];
  minimum?: number;
}

function exampleValue(name: string, schema: PropertySchema | undefined): unknown {
  if (schema === undefined) return `<${name}>`;
  const given = schema.examples?.[0] ?? schema.default ?? schema.const ?? schema.enum?.[0];
  if (given !== undefined) return given;
  const type = Array.isArray(schema.type) ? schema.type[0] : schema.type;
  if (type === "number" || type === "integer") return Math.max(schema.minimum ?? 1, 1);
  if (type === "boolean") return true;
  if (type === "array") return [];
  if (type === "object") return {};
  return `<${name}>`;
}
