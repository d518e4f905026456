import type { NatsConnection } from "@nats-io/transport-node";
import { ErrorCode } from "../../schemas/errors.ts";
import { PolicyAction } from "../../schemas/policy.ts";
import type { Workflow } from "../../schemas/workflow.ts";
import { authorize, LoomError } from "../kit/index.ts";
import type { ContextMemoryStore } from "./context-memory.ts";

/** What deciding a run's use of its context needs. */
export interface ContextAdmissionOptions {
  nc: NatsConnection;
  memory: ContextMemoryStore;
  policyTimeoutMs: number;
}

/** A run in a context: its starter, and the run's own token (`Bearer …`) to decide with. */
export interface RunInContext {
  contextId: string;
  runId: string;
  workflow: Pick<Workflow, "id" | "version">;
  principal: string;
  authorization: string;
}

/**
 * Admits a run into its context before anything of the context is read or written: the context
 * becomes the starter's when nobody owns it yet; a context someone else owns takes the run only
 * when `mayWriteContext` allows it.
 */
export async function admitToContext(options: ContextAdmissionOptions, run: RunInContext): Promise<void> {
  const owner = await options.memory.claim(run.contextId, run.principal);
  if (owner !== run.principal) await mayWriteContext(options, run, owner);
}

/**
 * Whether policy lets the run's starter use a context `owner` owns (`memory.write`, decided as the
 * run, with the owner as `resource.startedBy`: admins by default). Another principal is refused with
 * POLICY_DENIED, and the refusal says nothing of the context's content or owner.
 */
export async function mayWriteContext(
  options: Omit<ContextAdmissionOptions, "memory">,
  run: Omit<RunInContext, "principal">,
  owner: string | undefined,
): Promise<void> {
  try {
    await authorize(
      options.nc,
      {
        action: PolicyAction.MEMORY_WRITE,
        resource: { contextId: run.contextId, ...(owner === undefined ? {} : { startedBy: owner }) },
        runId: run.runId,
        runWorkflow: { id: run.workflow.id, version: run.workflow.version },
      },
      {
        authorization: run.authorization,
        timeoutMs: options.policyTimeoutMs,
        what: `running in context ${run.contextId}`,
        channel: "run",
      },
    );
  } catch (error) {
    if (!(error instanceof LoomError) || error.code !== ErrorCode.POLICY_DENIED) throw error;
    throw new LoomError(
      ErrorCode.POLICY_DENIED,
      `context ${run.contextId} belongs to another principal: submit with a context of your own (or none)`,
      { cause: error, ...(error.details === undefined ? {} : { details: error.details }) },
    );
  }
}
