import { randomUUID } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { trace } from "@opentelemetry/api";
import { type Request, Router } from "express";
import type { StateValue } from "xstate";
import type { z } from "zod";
import {
  ConsoleRerunSchema,
  ConsoleRunFiltersSchema,
  ConsoleSubmitSchema,
  type RunTrace,
} from "../../../schemas/console.ts";
import {
  type RequestContract,
  RunCancelContract,
  RunGetContract,
  RunInputContract,
  RunRerunContract,
} from "../../../schemas/contracts.ts";
import { ErrorCode } from "../../../schemas/errors.ts";
import { PolicyAction } from "../../../schemas/policy.ts";
import { RunCancelSchema, RunInputSchema } from "../../../schemas/run.ts";
import { MAX_RUNS_PAGE, StepStatus } from "../../../schemas/run-read.ts";
import {
  Headers,
  RUN_ID_PATTERN,
  runCancelSubject,
  runInputSubject,
  Subjects,
} from "../../../schemas/subjects.ts";
import {
  authenticate,
  contextFromFields,
  LoomError,
  publishSubmission,
  readRunEvents,
  readSpans,
  request,
} from "../../kit/index.ts";
import { accessRun, maskedEvent } from "../run-access.ts";
import { machineFor } from "../run-machine.ts";
import { listRuns } from "../run-reads.ts";
import { restoredSnapshot, stepTimeline } from "../step-timeline.ts";
import { authorizationOf, handler, parse } from "./http.ts";
import { openEventStream, streamQuery } from "./live.ts";
import type { ConsoleOptions } from "./options.ts";
import { runGraph } from "./run-graph.ts";

/** How long one poll of a run's events waits; the caller's right to follow it is decided again after. */
const EVENTS_POLL_MS = 10_000;
const EVENTS_BATCH_BYTES = 256 * 1024;
/** How long a start waits for the run's record before answering (it is then accepted regardless). */
const SUBMIT_WAIT_MS = 5_000;
/** How long a human answer or a cancel may take to be applied. */
const CONTROL_TIMEOUT_MS = 15_000;

/**
 * The runs API of the console: the list (and its live stream), start, a run's view, events (live),
 * graph and trace, and its answers and cancel. Every route decides with acp-policy for the caller's
 * token through the same functions the CLI's and A2A's reads use, and masks for the caller.
 */
export function runRoutes(options: ConsoleOptions): Router {
  const { log } = options;
  const router = Router();
  const filtersOf = (query: unknown) => ({
    ...parse(ConsoleRunFiltersSchema, query, "run filters"),
    limit: MAX_RUNS_PAGE,
  });

  router.get(
    "/runs",
    handler(log, async (req, res) => {
      res.json(await listRuns(options, filtersOf(req.query), authorizationOf(req)));
    }),
  );

  router.get(
    "/runs/live",
    handler(log, async (req, res) => {
      const filters = filtersOf(req.query);
      const authorization = authorizationOf(req);
      // Decided once before the stream opens, so a refused caller gets its status, not a stream.
      const first = await listRuns(options, filters, authorization);
      const stream = openEventStream(req, res);
      stream.send("runs", first);
      await streamQuery(stream, options.changes, "runs", () => listRuns(options, filters, authorization));
    }),
  );

  router.post(
    "/runs",
    handler(log, async (req, res) => {
      const body = parse(ConsoleSubmitSchema, req.body, "run submission");
      const authorization = authorizationOf(req);
      // A refused token is told now; whether it may start this workflow is decided with the run.
      await authenticate(options.nc, authorization, options.policyTimeoutMs);
      const runId = randomUUID();
      await publishSubmission(
        options.js,
        { runId, workflow: body.workflow, input: body.input },
        authorization,
      );
      // The page opens the run next: answer once its record exists, so it is found (or time out).
      const deadline = Date.now() + SUBMIT_WAIT_MS;
      while ((await options.runs.get(runId)) === undefined && Date.now() < deadline) await sleep(50);
      res.status(202).json({ runId });
    }),
  );

  /** The run as `loom runs get` shows it (steps, what it waits for), through the same read API. */
  const runView = (runId: string, authorization: string | undefined) =>
    request(
      options.nc,
      Subjects.RUNS_GET,
      RunGetContract,
      { runId },
      { timeoutMs: options.policyTimeoutMs, headers: { [Headers.AUTHORIZATION]: authorization } },
    );

  router.get(
    "/runs/:runId",
    handler(log, async (req, res) => {
      res.json(await runView(runIdOf(req.params), authorizationOf(req)));
    }),
  );

  router.get(
    "/runs/:runId/events",
    handler(log, async (req, res) => {
      const runId = runIdOf(req.params);
      const authorization = authorizationOf(req);
      let access = await accessRun(options, runId, PolicyAction.RUNS_SUBSCRIBE, authorization);
      const first = await runView(runId, authorization);
      const stream = openEventStream(req, res);
      stream.send("run", first);
      let afterSequence = 0;
      while (!stream.closed) {
        const read = await readRunEvents(options.js, runId, {
          afterSequence,
          waitMs: EVENTS_POLL_MS,
          maxBytes: EVENTS_BATCH_BYTES,
          onInvalid: (problem) => log.warn({ run_id: runId, problem }, "unreadable run event skipped"),
        });
        afterSequence = read.lastSequence;
        try {
          access = await accessRun(options, runId, PolicyAction.RUNS_SUBSCRIBE, authorization);
          if (read.events.length === 0) continue;
          stream.send("events", {
            events: read.events.map((event) => maskedEvent(event, access.obligations)),
            lastSequence: read.lastSequence,
          });
          stream.send("run", await runView(runId, authorization));
        } catch (error) {
          stream.fail(error);
          return;
        }
      }
    }),
  );

  router.get(
    "/runs/:runId/graph",
    handler(log, async (req, res) => {
      const access = await accessRun(
        options,
        runIdOf(req.params),
        PolicyAction.RUNS_READ,
        authorizationOf(req),
      );
      const { definition } = access.stored.record;
      if (definition === undefined) {
        res.json({ nodes: [], edges: [] });
        return;
      }
      const snapshot = restoredSnapshot(access.stored.record);
      // Gone through: every step the timeline says ended, and every work step entered.
      const ended = stepTimeline(access.stored.record)
        .filter((step) => step.state === StepStatus.COMPLETED || step.state === StepStatus.FAILED)
        .map((step) => step.stepId);
      const visited = new Set([...ended, ...Object.keys(snapshot.context.visits)]);
      res.json(runGraph(machineFor(definition), { value: snapshot.value as StateValue, visited }));
    }),
  );

  router.get(
    "/runs/:runId/trace",
    handler(log, async (req, res) => {
      const access = await accessRun(
        options,
        runIdOf(req.params),
        PolicyAction.RUNS_READ,
        authorizationOf(req),
      );
      const { traceContext } = access.stored.record;
      const traceId =
        traceContext === undefined
          ? undefined
          : trace.getSpanContext(contextFromFields(traceContext))?.traceId;
      if (traceId === undefined) {
        res.json({ spans: [] } satisfies RunTrace);
        return;
      }
      res.json({
        traceId,
        jaeger: `${options.jaegerUi.replace(/\/$/, "")}/trace/${traceId}`,
        spans: await readSpans(options.js, traceId),
      } satisfies RunTrace);
    }),
  );

  /**
   * An answer or a cancel: the body parsed, then the token verified, so a refused one is told so
   * whatever the run; the run's own handler on `subjectOf(runId)` then decides the action itself.
   */
  const controlRoute = <Req extends z.ZodType, Res extends z.ZodType>(
    contract: RequestContract<Req, Res>,
    subjectOf: (runId: string) => string,
    bodyOf: (req: Request) => z.input<Req>,
  ) =>
    handler(log, async (req, res) => {
      const body = bodyOf(req);
      await authenticate(options.nc, authorizationOf(req), options.policyTimeoutMs);
      const runId = runIdOf(req.params);
      if (!RUN_ID_PATTERN.test(runId))
        throw new LoomError(ErrorCode.RUN_NOT_FOUND, `no run with id ${runId}`);
      const reply = await request(options.nc, subjectOf(runId), contract, body, {
        timeoutMs: CONTROL_TIMEOUT_MS,
        headers: { [Headers.AUTHORIZATION]: authorizationOf(req) },
      });
      res.json(reply);
    });

  router.post(
    "/runs/:runId/input",
    controlRoute(RunInputContract, runInputSubject, (req) => parse(RunInputSchema, req.body, "answer")),
  );
  router.post(
    "/runs/:runId/cancel",
    controlRoute(RunCancelContract, runCancelSubject, (req) =>
      parse(RunCancelSchema, req.body ?? {}, "cancel"),
    ),
  );
  router.post(
    "/runs/:runId/rerun",
    handler(log, async (req, res) => {
      const body = parse(ConsoleRerunSchema, req.body ?? {}, "rerun");
      const reply = await request(
        options.nc,
        Subjects.RUNS_RERUN,
        RunRerunContract,
        { runId: runIdOf(req.params), ...body },
        { timeoutMs: CONTROL_TIMEOUT_MS, headers: { [Headers.AUTHORIZATION]: authorizationOf(req) } },
      );
      res.status(202).json(reply);
    }),
  );
  return router;
}

/** The run id of a route; the read functions check its form (a bad one is RUN_NOT_FOUND). */
function runIdOf(params: Request["params"]): string {
  return String(params.runId ?? "");
}
