import { resolve } from "node:path";
import { z } from "zod";
import { DEV_ISSUER } from "../kit/dev-issuer.ts";
import { BaseConfigSchema, checkedList, loadConfig, PortSchema, unsetWhenEmpty } from "../kit/index.ts";
import { allowListEntryProblem } from "./a2a/outbound-url.ts";
import { DEFAULT_EXPRESSION_LIMITS, type ExpressionLimits } from "./expression-budget.ts";
import { DEFAULT_LIMITS, type RunLimits } from "./limits.ts";

const REPO_ROOT = resolve(import.meta.dirname, "../..");

/** URL prefixes of an outbound allow-list: each must be an http(s) URL without userinfo, or start-up fails. */
const urlPrefixes = () => checkedList("", allowListEntryProblem);

/** An integer setting (milliseconds, bytes, counts) of at least `min`. */
const integer = (fallback: number, min = 1) => z.coerce.number().int().min(min).default(fallback);

export const OrchestratorConfigSchema = BaseConfigSchema.extend({
  LOOM_WORKFLOWS_DIR: z
    .string()
    .default(resolve(REPO_ROOT, "workflows"))
    .describe("Folder of workflow definitions (YAML or JSON) registered at start."),
  LOOM_POLICY_TIMEOUT_MS: integer(5_000).describe("How long to wait for a policy decision, in milliseconds."),
  LOOM_STEP_TIMEOUT_MS: integer(30_000).describe(
    "A step's timeout when its definition names none, in milliseconds.",
  ),
  LOOM_ELICITATION_TIMEOUT_MS: integer(600_000).describe(
    "The most a step's tool call may run beyond its timeout, in all, while people answer the questions its MCP server asks (elicitation), in milliseconds; the step's clock stops meanwhile.",
  ),
  LOOM_MAX_CONCURRENT_SUBMISSIONS: integer(64).describe(
    "Submissions accepted at once; more wait in the stream.",
  ),
  LOOM_A2A_PORT: PortSchema.describe(
    "Port of the A2A HTTP edge (Agent Card, JSON-RPC, HTTP+JSON, MCP gateway); 0 picks a free one. Unset, it is 7410, or a free one when 7410 is taken (a second stack on the host); a port you set must be free.",
  ),
  LOOM_A2A_PUBLIC_URL: z
    .url()
    .optional()
    .describe(
      "The base URL clients reach the A2A edge at, as written in the Agent Card (`http://127.0.0.1:<port>` unset). Its host is one the orchestrator's HTTP listeners answer to, and its origin one whose pages may call them (see `LOOM_HTTP_ALLOWED_HOSTS`).",
    ),
  LOOM_A2A_WEBHOOK_ALLOW: urlPrefixes().describe(
    "Comma-separated URL prefixes A2A push-notification webhooks may target (for example `https://hooks.example.com/`); any other is refused. None by default. Compared parsed (scheme, host, port, whole path segments); redirects are not followed, and a name that resolves to a loopback, private or link-local address is refused unless a prefix names that host.",
  ),
  LOOM_A2A_DELEGATE_ALLOW: urlPrefixes().describe(
    "Comma-separated URL prefixes `delegate: {url}` steps may reach (for example `https://agents.example.com/`); none by default, so no remote delegation. The step's URL, its Agent Card (`<url>/.well-known/agent-card.json`) and every interface URL the card names must each fall under one, compared as `LOOM_A2A_WEBHOOK_ALLOW`'s are; redirects are not followed. A definition naming another URL is refused when applied or submitted (`DELEGATE_REFUSED`).",
  ),
  LOOM_A2A_OUTBOUND_CREDENTIALS: z
    .string()
    .default("{}")
    .transform((text, context) => {
      let credentials: Record<string, string>;
      try {
        credentials = z.record(z.string(), z.string()).parse(JSON.parse(text));
      } catch {
        context.addIssue({
          code: "custom",
          message: "must be a JSON object of URL prefix to Authorization value",
        });
        return z.NEVER;
      }
      for (const prefix of Object.keys(credentials)) {
        const problem = allowListEntryProblem(prefix);
        if (problem !== undefined)
          context.addIssue({ code: "custom", message: problem.replace("entry", "prefix") });
      }
      return credentials;
    })
    .describe(
      'Credentials for external A2A agents that `delegate: {url}` steps call: a JSON object from URL prefix to the Authorization value to send, e.g. `{"https://agent.example.com/": "Bearer abc"}`. Each request to an agent\'s interface carries the value of the most specific prefix its URL falls under, compared as `LOOM_A2A_DELEGATE_ALLOW` entries are (parsed, whole path segments).',
    ),
  LOOM_RUN_LEASE_MS: integer(5_000, 500).describe(
    "How long a replica's claim on a run lasts unrenewed, in milliseconds: a dead replica's runs move on after this.",
  ),
  LOOM_RECOVERY_WINDOW_MS: integer(15 * 60_000, 1).describe(
    "How far back, at start and after each reconnect to NATS, an orchestrator looks in the submissions stream for accepted runs the store has lost (a single node without sync that crashed), in milliseconds. Longer than the broker keeps writes unflushed (2 min by default).",
  ),
  LOOM_MCP_SESSION_TTL_MS: integer(24 * 3_600_000, 60_000).describe(
    "How long an idle MCP gateway session is kept (KV `loom_mcp_sessions` TTL), in milliseconds.",
  ),
  LOOM_AUTH_ISSUER: z
    .string()
    .min(1)
    .default(DEV_ISSUER)
    .describe(
      "The identity provider acp-policy trusts (its `iss`). An http(s) URL is named as the authorization server in the MCP gateway's protected resource metadata; any other value (the dev issuer `loom-dev`) names the development authorization server on this edge instead (`/.well-known/oauth-authorization-server`, `/oauth/token`), which issues tokens only while acp-policy runs in dev mode.",
    ),
  LOOM_JAEGER_UI: z
    .url()
    .default("http://localhost:16686")
    .describe("Jaeger's web UI: the console's run page links each run's trace there."),
  LOOM_DATA_DIR: z
    .string()
    .default(resolve(REPO_ROOT, ".loom"))
    .describe(
      "Local data folder: in dev mode (no LOOM_AUTH_JWKS_URL or LOOM_AUTH_PUBLIC_KEYS) the console's dev sign-in signs tokens with the dev key acp-policy keeps here.",
    ),
  LOOM_AUTH_JWKS_URL: unsetWhenEmpty(z.url().optional()).describe(
    "As acp-policy's: with an identity provider configured, the console has no dev sign-in.",
  ),
  LOOM_AUTH_PUBLIC_KEYS: unsetWhenEmpty(z.string().optional()).describe(
    "As acp-policy's: with a JWKS file configured, the console has no dev sign-in.",
  ),
  LOOM_RESULT_INLINE_MAX_BYTES: integer(16 * 1024, 256).describe(
    "A run keeps its step results in its record while they total at most this many JSON bytes; each later one is stored in KV `loom_results` and referenced from the run.",
  ),
  LOOM_MAX_INPUT_BYTES: integer(DEFAULT_LIMITS.maxInputBytes, 1_024).describe(
    "The largest run input a caller may send, in JSON bytes; more is refused with `LIMIT_EXCEEDED`.",
  ),
  LOOM_MAX_DEFINITION_BYTES: integer(DEFAULT_LIMITS.maxDefinitionBytes, 1_024).describe(
    "The largest workflow definition (registered, inline or graphed), in JSON bytes; more is refused with `LIMIT_EXCEEDED`.",
  ),
  LOOM_MAX_STEPS: integer(DEFAULT_LIMITS.maxSteps).describe(
    "Steps one workflow may have, parallel branches and compensation steps included; more is refused with `LIMIT_EXCEEDED`.",
  ),
  LOOM_EXPRESSION_TIMEOUT_MS: integer(DEFAULT_EXPRESSION_LIMITS.timeoutMs).describe(
    "CPU time the `{% %}` expressions of one field (a step's `with`, a `when`, a prompt, the run's output) may take to evaluate in all, in milliseconds; more fails the step with `LIMIT_EXCEEDED`.",
  ),
  LOOM_EXPRESSION_MAX_DEPTH: integer(DEFAULT_EXPRESSION_LIMITS.maxDepth).describe(
    "How deep an expression's evaluation may nest (recursive functions count each call).",
  ),
  LOOM_EXPRESSION_MAX_SEQUENCE: integer(DEFAULT_EXPRESSION_LIMITS.maxSequence).describe(
    "The longest sequence or array (a range, a result, any value on the way) an expression may build.",
  ),
  LOOM_EXPRESSION_MAX_VALUE: integer(DEFAULT_EXPRESSION_LIMITS.maxValue, 1_024).describe(
    "The largest value an expression may compute on the way, sized about as its JSON length (a string's characters; an array's or object's items, keys and contents, a value held twice counted twice).",
  ),
  LOOM_EXPRESSION_MAX_BUILT: integer(DEFAULT_EXPRESSION_LIMITS.maxBuilt, 1_024).describe(
    "The sizes (as for `LOOM_EXPRESSION_MAX_VALUE`) of every value the functions and operators of one field's expressions build, added up.",
  ),
  LOOM_EXPRESSION_MAX_RESULT_BYTES: integer(DEFAULT_EXPRESSION_LIMITS.maxResultBytes, 1_024).describe(
    "The most JSON bytes one expression may return, and a run's output may take.",
  ),
  LOOM_MEMORY_MAX_ENTRIES: integer(50).describe(
    "Context memory: entries kept per context (oldest go first).",
  ),
  LOOM_MEMORY_MAX_BYTES: integer(256 * 1024, 1_024).describe(
    "Context memory: bytes kept per context (oldest entries go first).",
  ),
  LOOM_MEMORY_TTL_MS: integer(7 * 24 * 3_600_000).describe(
    "Context memory: how long an idle context is kept, in milliseconds.",
  ),
});
export type OrchestratorConfig = z.infer<typeof OrchestratorConfigSchema>;

export function readOrchestratorConfig(env: NodeJS.ProcessEnv = process.env): OrchestratorConfig {
  return loadConfig(OrchestratorConfigSchema, env);
}

/**
 * Where the dev signing key is when the stack runs in dev mode (acp-policy trusts it exactly when no
 * identity provider is configured): the console's dev sign-in is offered then, and only then.
 */
export function devSignInDataDir(config: OrchestratorConfig): string | undefined {
  const identityProvider = config.LOOM_AUTH_JWKS_URL ?? config.LOOM_AUTH_PUBLIC_KEYS;
  return identityProvider === undefined ? config.LOOM_DATA_DIR : undefined;
}

/** The caller-controlled sizes the config bounds. */
export function runLimitsOf(config: OrchestratorConfig): RunLimits {
  return {
    maxInputBytes: config.LOOM_MAX_INPUT_BYTES,
    maxDefinitionBytes: config.LOOM_MAX_DEFINITION_BYTES,
    maxSteps: config.LOOM_MAX_STEPS,
  };
}

/** The bounds on each expression's evaluation the config sets. */
export function expressionLimitsOf(config: OrchestratorConfig): ExpressionLimits {
  return {
    timeoutMs: config.LOOM_EXPRESSION_TIMEOUT_MS,
    maxDepth: config.LOOM_EXPRESSION_MAX_DEPTH,
    maxSequence: config.LOOM_EXPRESSION_MAX_SEQUENCE,
    maxValue: config.LOOM_EXPRESSION_MAX_VALUE,
    maxBuilt: config.LOOM_EXPRESSION_MAX_BUILT,
    maxResultBytes: config.LOOM_EXPRESSION_MAX_RESULT_BYTES,
  };
}
