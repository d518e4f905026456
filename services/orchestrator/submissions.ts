import { randomUUID } from "node:crypto";
import {
  AckPolicy,
  DeliverPolicy,
  type JetStreamClient,
  type JetStreamManager,
  type JsMsg,
} from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { nanos } from "@nats-io/transport-node";
import { TaskState } from "../../schemas/a2a.ts";
import { ErrorCode, RETRYABLE_CODES, type WireError } from "../../schemas/errors.ts";
import { PolicyAction } from "../../schemas/policy.ts";
import { type RunRecord, RunSubmissionSchema } from "../../schemas/run.ts";
import { Consumers, Headers, RUN_ID_PATTERN, Streams, Subjects } from "../../schemas/subjects.ts";
import {
  authenticate,
  authorize,
  ensureConsumer,
  extractTraceContext,
  type JsonSchemaValidator,
  type Logger,
  LoomError,
  parsePayload,
  retryBrokerFailures,
  SpanKind,
  toWireError,
  traceContextFields,
  withSpan,
} from "../kit/index.ts";
import { admitToContext } from "./context-admission.ts";
import type { ContextMemoryStore } from "./context-memory.ts";
import { assertInputWithin, type RunLimits } from "./limits.ts";
import type { RunDriver } from "./run-driver.ts";
import type { RunEvents } from "./run-events.ts";
import { linkRerun, rerunStart } from "./run-rerun.ts";
import { initialState } from "./run-restore.ts";
import type { RunStore, StoredRun } from "./run-store.ts";
import type { RunTokens } from "./run-tokens.ts";
import type { WorkflowCatalog } from "./workflow-catalog.ts";

/** Deliveries of one submission before a persistent failure (policy down, say) fails the run. */
const MAX_DELIVERIES = 10;
const REDELIVERY_DELAY_MS = 1_000;

export interface SubmissionOptions {
  nc: NatsConnection;
  js: JetStreamClient;
  catalog: WorkflowCatalog;
  runs: RunStore;
  events: RunEvents;
  driver: RunDriver;
  validator: JsonSchemaValidator;
  limits: RunLimits;
  log: Logger;
  policyTimeoutMs: number;
  maxConcurrent: number;
  /** This replica's name and lease length, written into each run it accepts. */
  owner: string;
  leaseMs: number;
  /** Where each accepted run's run token is kept (never in its record, which others may read). */
  runTokens: RunTokens;
  /** Context memory, whose contexts each run is admitted into before it is stored. */
  memory: ContextMemoryStore;
}

/** The durable consumer every orchestrator replica shares, so each submission is taken once. */
export async function ensureSubmissionConsumer(jsm: JetStreamManager): Promise<void> {
  const config = {
    durable_name: Consumers.ORCHESTRATOR_SUBMISSIONS,
    ack_policy: AckPolicy.Explicit,
    deliver_policy: DeliverPolicy.All,
    // Accepting a submission takes milliseconds; one held by a crashed replica comes back after this.
    ack_wait: nanos(10_000),
    max_deliver: MAX_DELIVERIES + 1,
  };
  await ensureConsumer(jsm, Streams.RUNS, config);
}

/**
 * A submission to admit: one the shared consumer delivered (acked once its run is stored, nak'ed
 * to come back later), or one recovery read again from the stream (see `recoverLostRuns`).
 */
export interface SubmissionDelivery {
  /** `loom.v1.runs.submit`, or `loom.v1.runs.delegated` for a delegate step's child run. */
  subject: string;
  data: Uint8Array;
  headers: JsMsg["headers"];
  /** Stream sequence in `LOOM_RUNS`. */
  seq: number;
  deliveryCount: number;
  ack(): void;
  nak(delayMs: number): void;
}

function fromConsumer(message: JsMsg): SubmissionDelivery {
  return {
    subject: message.subject,
    data: message.data,
    headers: message.headers,
    seq: message.seq,
    deliveryCount: message.info.deliveryCount,
    ack: () => message.ack(),
    nak: (delayMs) => message.nak(delayMs),
  };
}

/** Takes submissions from `LOOM_RUNS` until stopped; each is acked once its run is stored. */
export async function consumeSubmissions(options: SubmissionOptions): Promise<{ stop(): Promise<void> }> {
  const consumer = await retryBrokerFailures(() =>
    options.js.consumers.get(Streams.RUNS, Consumers.ORCHESTRATOR_SUBMISSIONS),
  );
  const messages = await consumer.consume({ max_messages: options.maxConcurrent });
  const inFlight = new Set<Promise<void>>();
  const loop = (async () => {
    for await (const message of messages) {
      const accepting = acceptSubmission(options, fromConsumer(message))
        .catch((error: unknown) => options.log.error({ err: error }, "submission not handled"))
        .finally(() => inFlight.delete(accepting));
      inFlight.add(accepting);
      if (inFlight.size >= options.maxConcurrent) await Promise.race(inFlight);
    }
  })();
  return {
    async stop() {
      messages.stop();
      await loop;
      await Promise.allSettled(inFlight);
    },
  };
}

export async function acceptSubmission(
  options: SubmissionOptions,
  message: SubmissionDelivery,
): Promise<void> {
  const headerRunId = message.headers?.get(Headers.MSG_ID) ?? "";
  let runId = RUN_ID_PATTERN.test(headerRunId) ? headerRunId : `unreadable-${message.seq}`;
  let workflowId = "(unreadable)";
  const log = options.log.child({ run_id: runId });
  await withSpan(
    `process ${message.subject}`,
    {
      kind: SpanKind.CONSUMER,
      parent: extractTraceContext(message.headers),
      attributes: {
        "messaging.system": "nats",
        "messaging.destination.name": message.subject,
        "messaging.operation.type": "process",
        "loom.run.id": runId,
      },
    },
    async () => {
      try {
        const submission = parsePayload(RunSubmissionSchema, message.data, "run submission");
        runId = submission.runId;
        // The stream deduplicates on the message id: a submission under another id than its run's
        // would reach here as a second start of that run (someone else's, if they learned its id).
        if (message.headers?.get(Headers.MSG_ID) !== runId) {
          throw new LoomError(
            ErrorCode.INVALID_MESSAGE,
            `a submission's ${Headers.MSG_ID} header must be its run id ${runId}; loom submit and the SDKs set it`,
          );
        }
        workflowId = typeof submission.workflow === "string" ? submission.workflow : "(inline)";
        const authorization = message.headers?.get(Headers.AUTHORIZATION) || undefined;
        // A rerun takes the workflow, input and context of the run it reruns, which policy lets
        // this caller rerun (`runs.rerun`): on the public subject, anyone may ask for one.
        const rerun =
          submission.rerunOf === undefined
            ? undefined
            : await rerunStart(options, submission.rerunOf, authorization);
        const input = rerun?.input ?? submission.input;
        assertInputWithin(input, options.limits);
        const workflow = rerun?.plan.definition ?? options.catalog.resolve(submission.workflow);
        workflowId = workflow.id;
        if (workflow.input !== undefined) {
          options.validator.assertValid(workflow.input, input, `input of workflow ${workflow.id}`);
        }
        // A delegate step's child run comes with its parent's run token, on a subject only an
        // orchestrator may publish to; it is decided where only an orchestrator may ask. Anything
        // on the public subject is decided as the caller's own token, never as a run token.
        const delegated = message.subject === Subjects.RUNS_DELEGATED;
        const now = Date.now();
        const [decision, { snapshot, pending, timeline }] = await Promise.all([
          authorize(
            options.nc,
            {
              action: PolicyAction.WORKFLOW_START,
              resource: { workflow: workflow.id },
              runId,
              runWorkflow: { id: workflow.id, version: workflow.version },
            },
            {
              authorization,
              timeoutMs: options.policyTimeoutMs,
              what: `starting ${workflow.id}`,
              channel: delegated ? "run" : "public",
            },
          ),
          // The machine's first state is worked out while acp-policy decides (after the request went out).
          Promise.resolve().then(
            () => rerun?.plan ?? initialState(workflow, input, new Date(now).toISOString()),
          ),
        ]);
        if (decision.runToken === undefined) {
          throw new LoomError(ErrorCode.UNAUTHENTICATED, `acp-policy issued no run token for ${runId}`);
        }
        // A context the caller names (or a rerun keeps) may be someone else's: admitted before the
        // run token is kept or the run stored, so a refused run touches nothing of it. A context
        // made up here is new, and the run's own.
        const namedContext = rerun?.contextId ?? submission.contextId;
        if (namedContext !== undefined) {
          await admitToContext(options, {
            contextId: namedContext,
            runId,
            workflow,
            principal: decision.principal.id,
            authorization: `Bearer ${decision.runToken}`,
          });
        }
        // The token first: a stored record is a run any replica may take over and drive, which
        // it can only do with the token (written side by side, a broker failure between the two
        // left records whose steps were refused UNAUTHENTICATED).
        await options.runTokens.keepFirst(runId, decision.runToken);
        const stored = await options.runs.create({
          runId,
          contextId: namedContext ?? randomUUID(),
          workflowId: workflow.id,
          workflowVersion: workflow.version,
          definition: workflow,
          input,
          // The record holds its first steps' intent: the run works from its first write on.
          state: TaskState.WORKING,
          startedBy: decision.principal.id,
          snapshot,
          pending,
          timeline,
          ...(rerun === undefined ? {} : { rerunOf: rerun.plan.rerunOf }),
          owner: options.owner,
          leaseUntil: new Date(now + options.leaseMs).toISOString(),
          ...(workflow.deadline === undefined
            ? {}
            : { deadlineAt: new Date(now + workflow.deadline).toISOString() }),
          traceContext: traceContextFields(),
          createdAt: new Date(now).toISOString(),
          updatedAt: new Date(now).toISOString(),
        });
        // A redelivery of a submission this replica stored before something failed (its status
        // event, say) finishes that acceptance: announcing is deduplicated, driving is idempotent.
        const accepted = stored ?? (await ownAcceptedRun(options, runId));
        if (accepted === undefined) {
          log.info("submission already accepted; acknowledging the duplicate");
          message.ack();
          return;
        }
        if (rerun !== undefined) await linkRerun(options.runs, rerun.plan.rerunOf.runId, runId);
        // Told first, then driven without waiting for the PubAck: events of one connection reach
        // the stream in order, so the run's first step comes after. The submission is acked only
        // once both its record and its status event are stored.
        const announced = options.events.status(
          accepted.record,
          TaskState.SUBMITTED,
          rerun === undefined
            ? `run of ${workflow.id} v${workflow.version} accepted`
            : `rerun of ${rerun.plan.rerunOf.runId} from step ${rerun.plan.rerunOf.from} accepted (${workflow.id} v${workflow.version})`,
          "submitted",
        );
        void options.driver.drive(accepted);
        await announced;
        message.ack();
      } catch (error) {
        const authorization = message.headers?.get(Headers.AUTHORIZATION) || undefined;
        await refuseSubmission(options, message, { runId, workflowId, error, log, authorization });
      }
    },
  );
}

/** The run stored under `runId` when this replica accepted it and it has not moved on since. */
async function ownAcceptedRun(options: SubmissionOptions, runId: string): Promise<StoredRun | undefined> {
  const existing = await options.runs.get(runId);
  // Every later write (a step's outcome, a takeover) moves `updatedAt` on.
  return existing?.record.owner === options.owner && existing.record.updatedAt === existing.record.createdAt
    ? existing
    : undefined;
}

async function refuseSubmission(
  options: SubmissionOptions,
  message: SubmissionDelivery,
  refusal: {
    runId: string;
    workflowId: string;
    error: unknown;
    log: Logger;
    authorization: string | undefined;
  },
): Promise<void> {
  const wire = toWireError(refusal.error);
  const { log } = refusal;
  if (RETRYABLE_CODES.has(wire.code) && message.deliveryCount < MAX_DELIVERIES) {
    log.warn(
      { code: wire.code, delivery: message.deliveryCount, err: refusal.error },
      `submission will be retried: ${wire.message}`,
    );
    message.nak(REDELIVERY_DELAY_MS);
    return;
  }
  if (wire.code === ErrorCode.INTERNAL) log.error({ err: refusal.error }, "submission failed");
  else log.info({ code: wire.code }, `submission refused: ${wire.message}`);
  try {
    await recordRefusal(options, refusal, wire);
    message.ack();
  } catch (error) {
    log.error({ err: error }, "could not record the refusal; the submission will be redelivered");
    message.nak(REDELIVERY_DELAY_MS);
  }
}

/** A refused submission still becomes a run record and a final event, so the submitter learns why. */
async function recordRefusal(
  options: SubmissionOptions,
  refusal: { runId: string; workflowId: string; authorization: string | undefined },
  error: WireError,
): Promise<void> {
  const { runId, workflowId } = refusal;
  const startedBy = await submitterOf(options, refusal.authorization);
  // A refused token is a refusal like a deny: the run is rejected, not failed.
  const refused = error.code === ErrorCode.POLICY_DENIED || error.code === ErrorCode.UNAUTHENTICATED;
  const state = refused ? TaskState.REJECTED : TaskState.FAILED;
  const now = new Date().toISOString();
  const record: RunRecord = {
    runId,
    contextId: runId,
    workflowId,
    input: {},
    state,
    ...(startedBy === undefined ? {} : { startedBy }),
    // Still inside the submission's span: `loom runs trace` finds a refused run's trace too.
    traceContext: traceContextFields(),
    snapshot: null,
    pending: [],
    error,
    createdAt: now,
    updatedAt: now,
  };
  const stored = await options.runs.create(record);
  if (stored === undefined) return;
  await options.events.status(record, state, error.message, "final", { error });
}

/**
 * Who submitted a refused run, so they (and nobody else but admins) may read why: the token's
 * subject when acp-policy accepts it; nobody when it refuses it (a caller without a valid token
 * reads no run anyway).
 */
async function submitterOf(
  options: SubmissionOptions,
  authorization: string | undefined,
): Promise<string | undefined> {
  try {
    return (await authenticate(options.nc, authorization, options.policyTimeoutMs)).id;
  } catch (error) {
    if (error instanceof LoomError && error.code === ErrorCode.UNAUTHENTICATED) return undefined;
    throw error;
  }
}
