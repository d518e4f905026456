import { TaskState } from "../../../schemas/a2a.ts";
import type { InboxItem } from "../../../schemas/console.ts";
import { PolicyAction, type Principal } from "../../../schemas/policy.ts";
import { authenticate, permitted } from "../../kit/index.ts";
import { awaitedApprovals, awaitedElicitations, findStep } from "../demands.ts";
import type { RunAccessOptions } from "../run-access.ts";
import { restoreSnapshot } from "../run-control.ts";
import type { StoredRun } from "../run-store.ts";

/**
 * The caller's approvals inbox: every run waiting for input that the caller may answer. An approval
 * is listed when one of its roles is the caller's; any waiting input only when policy could allow
 * the caller `runs.approve` on the run (a dry run; answering is decided again, as from the CLI).
 */
export async function inboxOf(
  options: RunAccessOptions,
  authorization: string | undefined,
): Promise<{ principal: Principal; items: InboxItem[] }> {
  const principal = await authenticate(options.nc, authorization, options.policyTimeoutMs);
  const waiting: StoredRun[] = [];
  for await (const runId of await options.runs.keys()) {
    const stored = await options.runs.get(runId);
    if (stored?.record.state === TaskState.INPUT_REQUIRED && stored.record.definition !== undefined) {
      waiting.push(stored);
    }
  }
  const candidates = waiting.flatMap((stored) => itemsOf(stored, principal));
  const allowed = await permitted(
    options.nc,
    authorization,
    candidates.map((item) => ({
      action: PolicyAction.RUNS_APPROVE,
      target: item.workflowId,
      ...(item.startedBy === undefined ? {} : { startedBy: item.startedBy }),
    })),
    options.policyTimeoutMs,
  );
  const items = candidates
    .filter((_item, index) => allowed[index] === true)
    .sort((a, b) => b.updatedAt.localeCompare(a.updatedAt));
  return { principal, items };
}

/** What one waiting run asks that this principal's roles could answer. */
function itemsOf(stored: StoredRun, principal: Principal): InboxItem[] {
  const { record } = stored;
  const snapshot = restoreSnapshot(stored);
  const base = {
    runId: record.runId,
    workflowId: record.workflowId,
    state: record.state,
    ...(record.startedBy === undefined ? {} : { startedBy: record.startedBy }),
    updatedAt: record.updatedAt,
  };
  const approvals = awaitedApprovals(snapshot).flatMap((stepId): InboxItem[] => {
    const step = record.definition === undefined ? undefined : findStep(record.definition, stepId);
    const roles = step !== undefined && "approval" in step ? step.approval.roles : [];
    if (!principal.roles.some((role) => roles.includes(role))) return [];
    return [{ ...base, stepId, prompt: snapshot.context.approvals[stepId] ?? "", roles }];
  });
  const questions = awaitedElicitations(snapshot).flatMap((stepId): InboxItem[] => {
    const question = snapshot.context.elicitations?.[stepId];
    if (question === undefined) return [];
    return [
      {
        ...base,
        stepId,
        prompt: question.message,
        elicitation: { server: question.server, requestedSchema: question.requestedSchema },
      },
    ];
  });
  return [...approvals, ...questions];
}
