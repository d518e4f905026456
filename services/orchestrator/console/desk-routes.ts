import { Router } from "express";
import { type AuditRecord, AuditRecordSchema } from "../../../schemas/audit.ts";
import {
  type ConsoleAudit,
  ConsoleAuditQuerySchema,
  type ConsoleMe,
  type ConsoleTools,
  MAX_AUDIT_RECORDS,
} from "../../../schemas/console.ts";
import { PolicyExplainContract } from "../../../schemas/contracts.ts";
import { PolicyAction, PolicyDecisionRequestSchema } from "../../../schemas/policy.ts";
import { Headers, Subjects } from "../../../schemas/subjects.ts";
import { readAuditKeys, readAuditStream, verifyAudit } from "../../kit/audit-verify.ts";
import { authenticate, authorize, request } from "../../kit/index.ts";
import { readServerHealth, readToolDescriptors, summarizeServers } from "../../kit/server-health.ts";
import { readCallLog } from "../call-log.ts";
import { aggregateCallStats } from "../call-stats.ts";
import { accessRun } from "../run-access.ts";
import { authorizationOf, handler, parse } from "./http.ts";
import { inboxOf } from "./inbox.ts";
import { openEventStream, streamQuery } from "./live.ts";
import type { ConsoleOptions } from "./options.ts";

/** The window of tool call statistics the tools page shows. */
const STATS_WINDOW_MS = 24 * 3_600_000;

/**
 * Everything else the console shows: who the caller is, the workflows, the approvals inbox (live),
 * tools and servers, the audit trail with its verification, and the policy explain form.
 */
export function deskRoutes(options: ConsoleOptions): Router {
  const { log, nc, policyTimeoutMs } = options;
  const router = Router();
  const principalOf = (authorization: string | undefined) => authenticate(nc, authorization, policyTimeoutMs);

  router.get(
    "/me",
    handler(log, async (req, res) => {
      const principal = await principalOf(authorizationOf(req));
      res.json({ id: principal.id, roles: principal.roles } satisfies ConsoleMe);
    }),
  );

  router.get(
    "/workflows",
    handler(log, async (req, res) => {
      await principalOf(authorizationOf(req));
      res.json({ workflows: options.workflows() });
    }),
  );

  router.get(
    "/inbox",
    handler(log, async (req, res) => {
      const { items } = await inboxOf(options, authorizationOf(req));
      res.json({ items });
    }),
  );

  router.get(
    "/inbox/live",
    handler(log, async (req, res) => {
      const authorization = authorizationOf(req);
      const first = await inboxOf(options, authorization);
      const stream = openEventStream(req, res);
      stream.send("inbox", { items: first.items });
      await streamQuery(stream, options.changes, "inbox", async () => ({
        items: (await inboxOf(options, authorization)).items,
      }));
    }),
  );

  router.get(
    "/tools",
    handler(log, async (req, res) => {
      await principalOf(authorizationOf(req));
      const until = new Date();
      const since = new Date(until.getTime() - STATS_WINDOW_MS);
      const [tools, health, calls] = await Promise.all([
        readToolDescriptors(nc),
        readServerHealth(nc),
        readCallLog(options.js, { since }, log),
      ]);
      res.json({
        tools,
        servers: summarizeServers(health),
        stats: { since: since.toISOString(), until: until.toISOString(), rows: aggregateCallStats(calls) },
      } satisfies ConsoleTools);
    }),
  );

  router.get(
    "/audit",
    handler(log, async (req, res) => {
      const query = parse(ConsoleAuditQuerySchema, req.query, "audit query");
      const authorization = authorizationOf(req);
      // A run's trail is for whoever may read the run; a period's, for those policy lets read audit.
      if (query.run !== undefined) await accessRun(options, query.run, PolicyAction.RUNS_READ, authorization);
      else await authorizeAudit(authorization);
      const records = (await readAuditRecords()).filter(
        (record) =>
          (query.run === undefined || record.runId === query.run) &&
          (query.since === undefined || record.time >= query.since) &&
          (query.until === undefined || record.time <= query.until),
      );
      res.json({ records: records.slice(-MAX_AUDIT_RECORDS), total: records.length } satisfies ConsoleAudit);
    }),
  );

  router.get(
    "/audit/verify",
    handler(log, async (req, res) => {
      await authorizeAudit(authorizationOf(req));
      res.json(await verifyAudit(await readAuditStream(nc), await readAuditKeys(nc)));
    }),
  );

  router.post(
    "/policy/explain",
    handler(log, async (req, res) => {
      const body = parse(PolicyDecisionRequestSchema, req.body, "explain request");
      // acp-policy explains a refused token as an anonymous caller; the console serves signed-in people.
      await principalOf(authorizationOf(req));
      res.json(
        await request(nc, Subjects.POLICY_EXPLAIN, PolicyExplainContract, body, {
          timeoutMs: policyTimeoutMs,
          headers: { [Headers.AUTHORIZATION]: authorizationOf(req) },
        }),
      );
    }),
  );

  const authorizeAudit = (authorization: string | undefined) =>
    authorize(
      nc,
      { action: PolicyAction.AUDIT_READ, resource: {} },
      { authorization, timeoutMs: policyTimeoutMs, what: "reading the audit trail" },
    );

  /** Every record of the trail; one that does not parse is for `verify` to report, not to show. */
  const readAuditRecords = async (): Promise<AuditRecord[]> =>
    (await readAuditStream(nc)).flatMap(({ data }) => {
      const parsed = AuditRecordSchema.safeParse(jsonOrUndefined(new TextDecoder().decode(data)));
      return parsed.success ? [parsed.data] : [];
    });
  return router;
}

function jsonOrUndefined(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
