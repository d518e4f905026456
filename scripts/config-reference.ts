import { relative, resolve } from "node:path";
import { z } from "zod";
import { PolicyServiceConfigSchema } from "../services/acp-policy/config.ts";
import { CliConfigSchema } from "../services/cli/config.ts";
import { BaseConfigSchema, TelemetryConfigSchema } from "../services/kit/base-config.ts";
import { LlmAgentConfigSchema } from "../services/llm-agent/config.ts";
import { WorkerConfigSchema } from "../services/mcp-worker/config.ts";
import { OrchestratorConfigSchema } from "../services/orchestrator/config.ts";

const REPO_ROOT = resolve(import.meta.dirname, "..");

/** Where the configuration reference lives, generated from the schemas by `npm run docs:config`. */
export const CONFIGURATION_DOC = resolve(REPO_ROOT, "docs/configuration.md");

type ConfigSchema = z.ZodObject<z.ZodRawShape>;

interface Section {
  title: string;
  schema: ConfigSchema;
  /** Variables another section already lists. */
  without?: ConfigSchema;
}

const SECTIONS: readonly Section[] = [
  {
    title: "Tracing: every service, the CLI and the demo MCP servers",
    schema: TelemetryConfigSchema,
  },
  { title: "Every service", schema: BaseConfigSchema, without: TelemetryConfigSchema },
  { title: "orchestrator", schema: OrchestratorConfigSchema, without: BaseConfigSchema },
  { title: "acp-policy", schema: PolicyServiceConfigSchema, without: BaseConfigSchema },
  { title: "mcp-worker", schema: WorkerConfigSchema, without: BaseConfigSchema },
  { title: "llm-agent", schema: LlmAgentConfigSchema, without: BaseConfigSchema },
  { title: "the `loom` CLI", schema: CliConfigSchema, without: TelemetryConfigSchema },
];

const HEADER = `# Configuration

<!-- Generated from the zod config schemas (services/*/config.ts, services/kit/base-config.ts) by
     \`npm run docs:config\`; test/unit/docs-configuration.test.ts fails when this file disagrees. -->

Every setting is an environment variable, read and validated once when a process starts; an
invalid value stops it with \`CONFIG_INVALID\` naming the variable. Durations take \`250ms\`, \`5s\`,
\`1m\`, \`24h\` or a number of milliseconds; paths are relative to the repository.
`;

const FOOTER = `
## Elsewhere

- The secrets a remote MCP server's \`auth\` block names (\`tokenEnv\`, \`clientSecretEnv\`) are read
  from the mcp-worker's environment under the names the block gives; see [MCP](mcp.md).
- NATS passwords for \`infra/nats/nats-server.conf\` come from \`LOOM_NATS_*_PASSWORD\`; see
  [Security](security.md).
- \`npm run bench\` reads \`BENCH_SEQUENTIAL_RUNS\`, \`BENCH_CONCURRENT_RUNS\` and \`BENCH_WAITING_RUNS\`
  (100, 640, 10000); see [Benchmark](benchmark.md).
`;

interface FieldDoc {
  description?: string;
  default?: unknown;
  enum?: unknown[];
}

function fieldDoc(field: z.ZodType): FieldDoc {
  return z.toJSONSchema(field, { io: "input", unrepresentable: "any" }) as FieldDoc;
}

const HOUR_MS = 3_600_000;

/** A default as a reader writes it: repository paths relative, long millisecond counts with their hours. */
function renderDefault(name: string, value: unknown): string {
  if (value === undefined) return "—";
  if (typeof value === "string" && value.startsWith(REPO_ROOT)) return `\`${relative(REPO_ROOT, value)}\``;
  if (typeof value === "number" && name.endsWith("_MS") && value >= HOUR_MS && value % HOUR_MS === 0) {
    return `\`${value}\` (${value / HOUR_MS} h)`;
  }
  return value === "" ? "none" : `\`${String(value)}\``;
}

function renderRow(name: string, field: z.ZodType): string {
  const doc = fieldDoc(field);
  if (doc.description === undefined) throw new Error(`${name} has no .describe() in its config schema`);
  const values =
    doc.enum === undefined ? "" : ` One of ${doc.enum.map((value) => `\`${String(value)}\``).join(", ")}.`;
  return `| \`${name}\` | ${renderDefault(name, doc.default)} | ${doc.description}${values} |`;
}

function renderSection(section: Section): string {
  const skip = new Set(Object.keys(section.without?.shape ?? {}));
  const rows = Object.entries(section.schema.shape)
    .filter(([name, field]) => !skip.has(name) || section.without?.shape[name] !== field)
    .map(([name, field]) => renderRow(name, field as z.ZodType));
  return [`## ${section.title}`, "", "| variable | default | meaning |", "|---|---|---|", ...rows, ""].join(
    "\n",
  );
}

/** The configuration reference, rendered from the schemas every process validates its environment with. */
export function renderConfigurationDoc(): string {
  return [HEADER, ...SECTIONS.map(renderSection)].join("\n") + FOOTER;
}
