import { z } from "zod";
import { TaskStateSchema } from "./a2a.ts";
import { AuditRecordSchema } from "./audit.ts";
import { ToolDescriptorSchema } from "./mcp.ts";
import { ServerSummarySchema } from "./mcp-health.ts";
import { RunIdSchema } from "./run.ts";
import { RunListRequestSchema, RunRerunRequestSchema, WaitingInputSchema } from "./run-read.ts";
import { SpanRecordSchema } from "./telemetry.ts";
import { ToolStatsSchema } from "./tool-calls.ts";

/*
 * What the web console (`/console` on the orchestrator's HTTP edge) reads and sends beyond the
 * shapes the bus already has. Every request carries the caller's bearer token; the browser code
 * takes its types from here by `import type`.
 */

/** `GET /console/api/config`: what the sign-in page may offer, before anyone signs in. */
export const ConsoleConfigSchema = z.object({
  /** A dev sign-in is offered: the stack runs with the dev signing key (no identity provider). */
  devSignIn: z.boolean(),
  /** Jaeger's web UI, to link a run's trace. */
  jaegerUi: z.url(),
});
export type ConsoleConfig = z.infer<typeof ConsoleConfigSchema>;

/** A role or subject name as a token carries it. */
const NameSchema = z.string().regex(/^[A-Za-z0-9._@-]{1,64}$/, "1-64 letters, digits, . _ @ or -");

/** `POST /console/api/dev-sign-in`: a development token for this subject and roles. */
export const DevSignInRequestSchema = z
  .object({ subject: NameSchema, roles: z.array(NameSchema).min(1).max(8) })
  .strict();
export type DevSignInRequest = z.infer<typeof DevSignInRequestSchema>;

export const DevSignInReplySchema = z.object({ token: z.string(), expiresAt: z.iso.datetime() });
export type DevSignInReply = z.infer<typeof DevSignInReplySchema>;

/** `GET /console/api/me`: who the token says the caller is, as acp-policy verified it. */
export const ConsoleMeSchema = z.object({ id: z.string(), roles: z.array(z.string()) });
export type ConsoleMe = z.infer<typeof ConsoleMeSchema>;

/** Query of `GET /console/api/runs` and its live stream: the run list filters, from a URL. */
export const ConsoleRunFiltersSchema = RunListRequestSchema.pick({
  state: true,
  workflow: true,
  since: true,
}).strict();
export type ConsoleRunFilters = z.infer<typeof ConsoleRunFiltersSchema>;

/** `POST /console/api/runs`: start a registered workflow with this input. */
export const ConsoleSubmitSchema = z
  .object({ workflow: z.string().min(1).max(200), input: z.record(z.string(), z.unknown()) })
  .strict();
export type ConsoleSubmit = z.infer<typeof ConsoleSubmitSchema>;

export const ConsoleSubmitReplySchema = z.object({ runId: RunIdSchema });

/** `POST /console/api/runs/:id/rerun`: start a failed or canceled run again (`loom runs rerun`). */
export const ConsoleRerunSchema = RunRerunRequestSchema.pick({ from: true }).strict();

/** `GET /console/api/workflows`: the registered workflows a run can be started from. */
export const ConsoleWorkflowsSchema = z.object({ workflows: z.array(z.string()) });

/** One step of a workflow's compiled machine, marked by where a run is in it. */
export const GraphNodeSchema = z.object({
  /** The machine's state id. */
  id: z.string(),
  /** The step id (or `done` and the like for the machine's own states). */
  label: z.string(),
  /** The enclosing state's id, for steps inside a parallel or compound step. */
  parent: z.string().optional(),
  kind: z.enum(["atomic", "compound", "parallel", "final"]),
  /** `current`: the run is in it now; `past`: the run went through it. */
  mark: z.enum(["current", "past", "none"]),
});
export type GraphNode = z.infer<typeof GraphNodeSchema>;

/** `GET /console/api/runs/:id/graph`: the run's workflow as its machine, steps marked. */
export const RunGraphSchema = z.object({
  nodes: z.array(GraphNodeSchema),
  edges: z.array(z.object({ from: z.string(), to: z.string(), label: z.string() })),
});
export type RunGraph = z.infer<typeof RunGraphSchema>;

/** `GET /console/api/runs/:id/trace`: the run's spans from `LOOM_SPANS`, and where Jaeger shows them. */
export const RunTraceSchema = z.object({
  traceId: z.string().optional(),
  jaeger: z.url().optional(),
  spans: z.array(SpanRecordSchema),
});
export type RunTrace = z.infer<typeof RunTraceSchema>;

/** Something a run waits for that the caller may answer: an approval, or an MCP server's question. */
export const InboxItemSchema = z.object({
  runId: RunIdSchema,
  workflowId: z.string(),
  state: TaskStateSchema,
  startedBy: z.string().optional(),
  updatedAt: z.iso.datetime(),
  /** What the run asks, as `loom runs get` shows it. */
  asked: WaitingInputSchema,
});
export type InboxItem = z.infer<typeof InboxItemSchema>;

export const InboxSchema = z.object({ items: z.array(InboxItemSchema) });
export type Inbox = z.infer<typeof InboxSchema>;

/** `GET /console/api/tools`: the registered tools, the servers' health, and call statistics. */
export const ConsoleToolsSchema = z.object({
  tools: z.array(ToolDescriptorSchema),
  servers: z.array(ServerSummarySchema),
  stats: ToolStatsSchema,
});
export type ConsoleTools = z.infer<typeof ConsoleToolsSchema>;

/** Query of `GET /console/api/audit`: one run's trail, or a period's (admins: `audit.read`). */
export const ConsoleAuditQuerySchema = z
  .object({
    run: RunIdSchema.optional(),
    since: z.iso.datetime().optional(),
    until: z.iso.datetime().optional(),
  })
  .strict();
export type ConsoleAuditQuery = z.infer<typeof ConsoleAuditQuerySchema>;

/** Most records one audit page shows (the newest ones). */
export const MAX_AUDIT_RECORDS = 500;

export const ConsoleAuditSchema = z.object({
  records: z.array(AuditRecordSchema),
  /** How many records matched; only the newest MAX_AUDIT_RECORDS are sent. */
  total: z.number().int().nonnegative(),
});
export type ConsoleAudit = z.infer<typeof ConsoleAuditSchema>;

/** An error the console API answers with, beside its HTTP status. */
export const ConsoleErrorSchema = z.object({ error: z.object({ code: z.string(), message: z.string() }) });
export type ConsoleError = z.infer<typeof ConsoleErrorSchema>;
