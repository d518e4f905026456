import type { NatsConnection } from "@nats-io/transport-node";
import { ErrorCode } from "../../schemas/errors.ts";
import {
  type Obligations,
  PolicyAction,
  type PolicyDecision,
  type PolicyDecisionRequest,
  type Principal,
} from "../../schemas/policy.ts";
import type { RunEvent, RunEventMetadata, RunRecord } from "../../schemas/run.ts";
import type { RunView, WaitingInput } from "../../schemas/run-read.ts";
import type { RequestedSchema } from "../../schemas/sampling.ts";
import { RUN_ID_PATTERN } from "../../schemas/subjects.ts";
import { authenticate, authorize, LoomError, permitted } from "../kit/index.ts";
import { hasMasks, MASK, maskValue, NO_MASKS } from "../kit/masking.ts";
import type { RunStore, StoredRun } from "./run-store.ts";
import { type AskedInput, stepTimeline } from "./step-timeline.ts";

/** The actions a reader may ask of an existing run (a rerun reads it to start anew). */
export type RunReadAction =
  | typeof PolicyAction.RUNS_READ
  | typeof PolicyAction.RUNS_RERUN
  | typeof PolicyAction.RUNS_SUBSCRIBE
  | typeof PolicyAction.PUSH_CONFIGURE;

/** How policy names a run: its workflow and who started it (rules let people see their own runs). */
export function runResource(
  record: Pick<RunRecord, "workflowId" | "startedBy">,
): PolicyDecisionRequest["resource"] {
  return {
    workflow: record.workflowId,
    ...(record.startedBy === undefined ? {} : { startedBy: record.startedBy }),
  };
}

export interface RunAccessOptions {
  nc: NatsConnection;
  runs: RunStore;
  policyTimeoutMs: number;
}

/** A run a reader was allowed to touch, with the masks policy asks for that reader. */
export interface RunAccess {
  stored: StoredRun;
  principal: Principal;
  obligations: Obligations | undefined;
}

/**
 * Every read of a run goes through here, whatever the edge (A2A, CLI, console): the caller's token
 * is verified and the action decided by acp-policy for this run, and only then is anything of the
 * run revealed (see `decideOnRun`).
 */
export async function accessRun(
  options: RunAccessOptions,
  runId: string,
  action: RunReadAction,
  authorization: string | undefined,
): Promise<RunAccess> {
  const { stored, decision } = await decideOnRun(
    options,
    runId,
    await findRun(options.runs, runId),
    (record) => ({ action, resource: runResource(record), runId }),
    authorization,
  );
  return { stored, principal: decision.principal, obligations: decision.obligations };
}

/**
 * The masks the caller's `runs.read` decision asks for on run `runId`, for what is sent to it
 * later without its token (a webhook). For a run not stored yet (a webhook given with the message
 * that starts it), decided as for the run it starts: of `workflow`, started by the caller. Refused
 * as any read is (RUN_NOT_FOUND, POLICY_DENIED, UNAUTHENTICATED).
 */
export async function readerObligations(
  options: RunAccessOptions,
  runId: string,
  workflow: string,
  authorization: string | undefined,
): Promise<Obligations> {
  if ((await findRun(options.runs, runId)) !== undefined) {
    const access = await accessRun(options, runId, PolicyAction.RUNS_READ, authorization);
    return access.obligations ?? NO_MASKS;
  }
  const principal = await authenticate(options.nc, authorization, options.policyTimeoutMs);
  const decision = await authorize(
    options.nc,
    { action: PolicyAction.RUNS_READ, resource: { workflow, startedBy: principal.id }, runId },
    { authorization, timeoutMs: options.policyTimeoutMs, what: `reading run ${runId}` },
  );
  return decision.obligations ?? NO_MASKS;
}

/** The run stored under `runId`; undefined when there is none (or the id could never name one). */
export function findRun(runs: RunStore, runId: string): Promise<StoredRun | undefined> {
  return RUN_ID_PATTERN.test(runId) ? runs.get(runId) : Promise.resolve(undefined);
}

/** What a caller hears of a run it may not act on, and of one that does not exist: the same. */
export function runNotFound(runId: string): LoomError {
  return new LoomError(ErrorCode.RUN_NOT_FOUND, `no run with id ${runId}`);
}

/**
 * Decides an action on run `runId` for the caller before anything about the run is revealed: a
 * refused token is UNAUTHENTICATED whether the run exists or not, and a run that does not exist and
 * one the caller may not even read are the same RUN_NOT_FOUND, so no one learns that a run exists,
 * what it runs or what state it is in without the right to see it. A caller who may read the run
 * but not do this to it (the starter answering an approval meant for managers) is told POLICY_DENIED
 * naming the rule. Every refusal is still decided and audited by acp-policy.
 */
export async function decideOnRun(
  options: Pick<RunAccessOptions, "nc" | "policyTimeoutMs">,
  runId: string,
  stored: StoredRun | undefined,
  requestFor: (record: RunRecord) => PolicyDecisionRequest,
  authorization: string | undefined,
): Promise<{ stored: StoredRun; decision: PolicyDecision }> {
  if (stored === undefined) {
    await authenticate(options.nc, authorization, options.policyTimeoutMs);
    throw runNotFound(runId);
  }
  const request = requestFor(stored.record);
  try {
    const decision = await authorize(options.nc, request, {
      authorization,
      timeoutMs: options.policyTimeoutMs,
    });
    return { stored, decision };
  } catch (error) {
    if (!(error instanceof LoomError) || error.code !== ErrorCode.POLICY_DENIED) throw error;
    if (request.action === PolicyAction.RUNS_READ || !(await mayRead(options, stored.record, authorization)))
      throw runNotFound(runId);
    throw error;
  }
}

/** Whether policy lets the caller read the run: a dry run, granting, counting and auditing nothing. */
async function mayRead(
  options: Pick<RunAccessOptions, "nc" | "policyTimeoutMs">,
  record: RunRecord,
  authorization: string | undefined,
): Promise<boolean> {
  const [allowed] = await permitted(
    options.nc,
    authorization,
    [
      {
        action: PolicyAction.RUNS_READ,
        target: record.workflowId,
        ...(record.startedBy === undefined ? {} : { startedBy: record.startedBy }),
      },
    ],
    options.policyTimeoutMs,
  );
  return allowed === true;
}

/**
 * What a reader sees of a run: no snapshot, definition or credentials, and its data masked for it;
 * its steps as a timeline, and `waiting`, what it asks (with whether this reader may answer).
 */
export function viewOfRun(
  record: RunRecord,
  obligations: Obligations | undefined,
  waiting: AskedInput[] = [],
): RunView {
  return {
    ...summaryOfRun(record, obligations),
    steps: maskedFor(stepTimeline(record), obligations),
    waiting: waiting.map((input) => maskedWaitingInput(input, obligations)),
  };
}

function summaryOfRun(
  record: RunRecord,
  obligations: Obligations | undefined,
): Omit<RunView, "steps" | "waiting"> {
  const { input, output, error } = record;
  return {
    runId: record.runId,
    contextId: record.contextId,
    workflowId: record.workflowId,
    ...(record.workflowVersion === undefined ? {} : { workflowVersion: record.workflowVersion }),
    input: maskedFor(input, obligations),
    state: record.state,
    ...(record.startedBy === undefined ? {} : { startedBy: record.startedBy }),
    ...(record.traceContext === undefined ? {} : { traceContext: record.traceContext }),
    ...(output === undefined ? {} : { output: maskedFor(output, obligations) }),
    ...(error === undefined ? {} : { error: maskedFor(error, obligations) }),
    ...(record.deadlineAt === undefined ? {} : { deadlineAt: record.deadlineAt }),
    ...(record.rerunOf === undefined ? {} : { rerunOf: record.rerunOf }),
    ...(record.rerunAs === undefined ? {} : { rerunAs: record.rerunAs }),
    createdAt: record.createdAt,
    updatedAt: record.updatedAt,
  };
}

/** The record with its data masked for a reader, in the record's shape (the A2A task is built from it). */
export function maskedRecord(record: RunRecord, obligations: Obligations | undefined): RunRecord {
  return { ...record, ...summaryOfRun(record, obligations) };
}

/**
 * A question a run asks, as the reader may see it: its prompt as rendered from the run's data only
 * for a reader who may see the run unmasked; for any other, the prompt rendered from masked data,
 * masked again for the reader as its event is (`maskedMetadata`).
 */
export function maskedWaitingInput(input: AskedInput, obligations: Obligations | undefined): WaitingInput {
  const { maskedPrompt, ...asked } = input;
  if (obligations === undefined || !hasMasks(obligations)) return asked;
  const { requestedSchema } = asked;
  return {
    ...asked,
    prompt: maskValue(maskedPrompt, obligations) as string,
    ...(requestedSchema === undefined
      ? {}
      : { requestedSchema: maskedRequestedSchema(requestedSchema, obligations) }),
  };
}

/** A run event with its data (message, metadata, artifact) masked for a reader; ids and states stay. */
export function maskedEvent(event: RunEvent, obligations: Obligations | undefined): RunEvent {
  if (obligations === undefined || !hasMasks(obligations)) return event;
  if ("artifactUpdate" in event) {
    const { artifactUpdate } = event;
    return {
      artifactUpdate: { ...artifactUpdate, artifact: maskedFor(artifactUpdate.artifact, obligations) },
    };
  }
  const { statusUpdate } = event;
  // An approval's prompt (its event names the roles that may answer) is shown as rendered from
  // masked data, never as the raw text re-masked; one asked before prompts were rendered twice has
  // no such rendering, and is not shown.
  const { metadata } = statusUpdate;
  const maskedText = metadata?.maskedText ?? (metadata?.roles === undefined ? undefined : MASK);
  const message =
    maskedText === undefined || statusUpdate.status.message === undefined
      ? statusUpdate.status.message
      : { ...statusUpdate.status.message, parts: [{ text: maskedText }] };
  return {
    statusUpdate: {
      ...statusUpdate,
      status: {
        ...statusUpdate.status,
        ...(message === undefined ? {} : { message: maskedFor(message, obligations) }),
      },
      ...(statusUpdate.metadata === undefined
        ? {}
        : { metadata: maskedMetadata(statusUpdate.metadata, obligations) }),
    },
  };
}

/**
 * An event's metadata masked for the reader. An elicitation's answer schema keeps its shape (a
 * field named like a masked one is still a field): its texts are masked, and a masked field's
 * default is dropped rather than shown, as the worker masks the question it relays.
 */
function maskedMetadata(metadata: RunEventMetadata, obligations: Obligations): RunEventMetadata {
  const { elicitation, ...rest } = metadata;
  const masked = maskedFor(rest, obligations);
  if (elicitation === undefined) return masked;
  return {
    ...masked,
    elicitation: {
      server: elicitation.server,
      message: maskValue(elicitation.message, obligations) as string,
      requestedSchema: maskedRequestedSchema(elicitation.requestedSchema, obligations),
    },
  };
}

/**
 * An elicitation's answer schema masked for a reader: it keeps its shape (a field named like a
 * masked one is still a field), its texts are masked, and a masked field's default is dropped.
 */
function maskedRequestedSchema(requestedSchema: RequestedSchema, obligations: Obligations): RequestedSchema {
  const properties = Object.fromEntries(
    Object.entries(requestedSchema.properties).map(([name, field]) => {
      const { default: prefilled, ...described } = field as Record<string, unknown>;
      const texts = Object.fromEntries(
        Object.entries(described).map(([key, value]) => [
          key,
          key !== "type" && (typeof value === "string" || Array.isArray(value))
            ? maskValue(value, obligations)
            : value,
        ]),
      );
      const keepDefault = prefilled !== undefined && !obligations.maskFields.includes(name);
      return [name, keepDefault ? { ...texts, default: maskValue(prefilled, obligations) } : texts];
    }),
  );
  return { ...requestedSchema, properties } as RequestedSchema;
}

/** A value masked as policy asks for the reader (fields by name, personal data by pattern). */
export function maskedFor<T>(value: T, obligations: Obligations | undefined): T {
  if (obligations === undefined || !hasMasks(obligations)) return value;
  return maskValue(value, obligations) as T;
}
