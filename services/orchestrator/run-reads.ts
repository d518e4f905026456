import type { JetStreamClient } from "@nats-io/jetstream";
import type { z } from "zod";
import {
  MemoryContract,
  RunGetContract,
  RunListContract,
  RunWatchContract,
} from "../../schemas/contracts.ts";
import { ErrorCode } from "../../schemas/errors.ts";
import type { ContextMemory } from "../../schemas/memory.ts";
import { type Obligations, PolicyAction } from "../../schemas/policy.ts";
import type { RunRecord } from "../../schemas/run.ts";
import type { RunListReply, RunListRequestSchema } from "../../schemas/run-read.ts";
import { Subjects } from "../../schemas/subjects.ts";
import {
  authenticate,
  authorize,
  type Logger,
  LoomError,
  permitted,
  readRunEvents,
  type Service,
  serve,
} from "../kit/index.ts";
import type { ContextMemoryStore } from "./context-memory.ts";
import { accessRun, maskedEvent, maskedFor, type RunAccessOptions, viewOfRun } from "./run-access.ts";
import { waitingInputs } from "./step-timeline.ts";

const QUEUE = "orchestrator-reads";
/** Events per watch reply, in bytes: well under the smallest max_payload a deployment would set. */
const WATCH_REPLY_BYTES = 256 * 1024;

export interface RunReadsOptions extends RunAccessOptions {
  js: JetStreamClient;
  memory: ContextMemoryStore;
  log: Logger;
}

/**
 * The authorised read API of runs and memory (`loom runs get|list`, `loom submit --watch`,
 * `loom memory get|clear`): clients read through here, never from `loom_runs`, `loom_memory` or
 * `LOOM_EVENTS` directly. Each request is decided by acp-policy and masked for the caller.
 */
export function serveRunReads(options: RunReadsOptions): { stop(): Promise<void> } {
  const services: Service[] = [
    serve(options.nc, {
      subject: Subjects.RUNS_GET,
      queue: QUEUE,
      contract: RunGetContract,
      log: options.log,
      handle: async ({ runId }, context) => {
        const access = await accessRun(options, runId, PolicyAction.RUNS_READ, context.authorization);
        const { record } = access.stored;
        const asks = waitingInputs(record);
        // Whoever policy lets answer (`runs.approve`, as run-control decides it), holding a role
        // the approval names when it names some.
        const [mayAnswer] =
          asks.length === 0
            ? [false]
            : await permitted(
                options.nc,
                context.authorization,
                [{ action: PolicyAction.RUNS_APPROVE, target: record.workflowId }],
                options.policyTimeoutMs,
              );
        const roles = access.principal.roles;
        const waiting = asks.map((ask) => ({
          ...ask,
          callerMayAnswer:
            mayAnswer === true && (ask.roles.length === 0 || ask.roles.some((role) => roles.includes(role))),
        }));
        return viewOfRun(record, access.obligations, waiting);
      },
    }),
    serve(options.nc, {
      subject: Subjects.RUNS_LIST,
      queue: QUEUE,
      contract: RunListContract,
      log: options.log,
      handle: (filters, context) => listRuns(options, filters, context.authorization),
    }),
    serve(options.nc, {
      subject: Subjects.RUNS_WATCH,
      queue: QUEUE,
      contract: RunWatchContract,
      log: options.log,
      handle: async ({ runId, afterSequence, waitMs }, context) => {
        const access = await accessRun(options, runId, PolicyAction.RUNS_SUBSCRIBE, context.authorization);
        const read = await readRunEvents(options.js, runId, {
          afterSequence,
          waitMs,
          maxBytes: WATCH_REPLY_BYTES,
          onInvalid: (problem) =>
            options.log.warn({ run_id: runId, problem }, "unreadable run event skipped"),
        });
        return {
          events: read.events.map((event) => maskedEvent(event, access.obligations)),
          lastSequence: read.lastSequence,
        };
      },
    }),
    serve(options.nc, {
      subject: Subjects.MEMORY_GET,
      queue: QUEUE,
      contract: MemoryContract,
      log: options.log,
      handle: async ({ contextId }, context) => {
        const decision = await decideOnMemory(
          options,
          contextId,
          PolicyAction.MEMORY_READ,
          context.authorization,
        );
        return {
          contextId,
          entries: decision === undefined ? [] : maskedFor(decision.memory.entries, decision.obligations),
        };
      },
    }),
    serve(options.nc, {
      subject: Subjects.MEMORY_CLEAR,
      queue: QUEUE,
      contract: MemoryContract,
      log: options.log,
      handle: async ({ contextId }, context) => {
        const decision = await decideOnMemory(
          options,
          contextId,
          PolicyAction.MEMORY_CLEAR,
          context.authorization,
        );
        // Never a success claim for a clear that cleared nothing: a context the caller may not
        // clear answers as one that has no memory.
        if (decision === undefined) {
          throw new LoomError(
            ErrorCode.CONTEXT_NOT_FOUND,
            `context ${contextId} has no memory you may clear (none, or not yours)`,
          );
        }
        await options.memory.clear(contextId);
        return { contextId, entries: [] };
      },
    }),
  ];
  return {
    async stop() {
      await Promise.all(services.map((service) => service.stop()));
    },
  };
}

/**
 * Decides a read or clear of a context's memory for the caller: undefined when there is nothing the
 * caller may touch, whether the context has no memory or policy refuses it (the refusal is decided
 * and audited by acp-policy), so the answer is the same empty memory and no one learns that a
 * context they may not use exists. A refused token is UNAUTHENTICATED either way.
 */
async function decideOnMemory(
  options: RunReadsOptions,
  contextId: string,
  action: typeof PolicyAction.MEMORY_READ | typeof PolicyAction.MEMORY_CLEAR,
  authorization: string | undefined,
): Promise<{ memory: ContextMemory; obligations: Obligations | undefined } | undefined> {
  const memory = await options.memory.read(contextId);
  if (memory === undefined) {
    await authenticate(options.nc, authorization, options.policyTimeoutMs);
    return undefined;
  }
  try {
    const decision = await authorize(
      options.nc,
      { action, resource: { contextId, ...(memory.owner === undefined ? {} : { startedBy: memory.owner }) } },
      { authorization, timeoutMs: options.policyTimeoutMs },
    );
    return { memory, obligations: decision.obligations };
  } catch (error) {
    if (error instanceof LoomError && error.code === ErrorCode.POLICY_DENIED) return undefined;
    throw error;
  }
}

/**
 * The runs the caller may read (`runs.list`, then `runs.read` for each run, asked at once as a dry
 * run), narrowed by the filters, newest update first, one page at a time.
 */
export async function listRuns(
  options: RunAccessOptions,
  filters: z.infer<typeof RunListRequestSchema>,
  authorization: string | undefined,
): Promise<RunListReply> {
  await authorize(
    options.nc,
    { action: PolicyAction.RUNS_LIST, resource: {} },
    { authorization, timeoutMs: options.policyTimeoutMs, what: "listing runs" },
  );
  const candidates: RunRecord[] = [];
  for await (const runId of await options.runs.keys()) {
    const stored = await options.runs.get(runId);
    if (stored === undefined) continue;
    const { record } = stored;
    if (filters.state !== undefined && record.state !== filters.state) continue;
    if (filters.workflow !== undefined && record.workflowId !== filters.workflow) continue;
    if (filters.contextId !== undefined && record.contextId !== filters.contextId) continue;
    if (filters.since !== undefined && record.updatedAt < filters.since) continue;
    candidates.push(record);
  }
  // One check per (workflow, starter): many runs share one, and the answer is the same for each.
  const checkKey = (record: RunRecord) => `${record.workflowId}\u0000${record.startedBy ?? ""}`;
  const checks = new Map<string, RunRecord>();
  for (const record of candidates) checks.set(checkKey(record), record);
  const keys = [...checks.keys()];
  const allowed = await permitted(
    options.nc,
    authorization,
    keys.map((key) => {
      const record = checks.get(key) as RunRecord;
      return {
        action: PolicyAction.RUNS_READ,
        target: record.workflowId,
        ...(record.startedBy === undefined ? {} : { startedBy: record.startedBy }),
      };
    }),
    options.policyTimeoutMs,
  );
  const visible = new Set(keys.filter((_key, index) => allowed[index] === true));
  const readable = candidates
    .filter((record) => visible.has(checkKey(record)))
    .sort((a, b) => b.updatedAt.localeCompare(a.updatedAt));
  const start = filters.cursor === undefined ? 0 : Number(filters.cursor);
  const page = readable.slice(start, start + filters.limit);
  const next = start + filters.limit;
  return {
    runs: page.map((record) => ({
      runId: record.runId,
      contextId: record.contextId,
      workflowId: record.workflowId,
      ...(record.workflowVersion === undefined ? {} : { workflowVersion: record.workflowVersion }),
      state: record.state,
      ...(record.startedBy === undefined ? {} : { startedBy: record.startedBy }),
      createdAt: record.createdAt,
      updatedAt: record.updatedAt,
    })),
    total: readable.length,
    ...(next < readable.length ? { nextCursor: String(next) } : {}),
  };
}
