import { TaskState } from "../../../schemas/a2a.ts";
import type { InboxItem } from "../../../schemas/console.ts";
import { PolicyAction, type Principal } from "../../../schemas/policy.ts";
import { authenticate, permitted } from "../../kit/index.ts";
import type { RunAccessOptions } from "../run-access.ts";
import { waitingInputs } from "../step-timeline.ts";

/**
 * The caller's approvals inbox: what runs waiting for input ask that the caller may answer, by the
 * rule `loom runs get` shows as `callerMayAnswer`: policy could allow the caller `runs.approve` on
 * the run (a dry run; the answer is decided again, as from the CLI), and an approval names one of
 * the caller's roles.
 */
export async function inboxOf(
  options: RunAccessOptions,
  authorization: string | undefined,
): Promise<{ principal: Principal; items: InboxItem[] }> {
  const principal = await authenticate(options.nc, authorization, options.policyTimeoutMs);
  const candidates: InboxItem[] = [];
  for await (const runId of await options.runs.keys()) {
    const stored = await options.runs.get(runId);
    if (stored?.record.state !== TaskState.INPUT_REQUIRED) continue;
    const { record } = stored;
    for (const asked of waitingInputs(record)) {
      if (asked.roles.length > 0 && !asked.roles.some((role) => principal.roles.includes(role))) continue;
      candidates.push({
        runId: record.runId,
        workflowId: record.workflowId,
        state: record.state,
        ...(record.startedBy === undefined ? {} : { startedBy: record.startedBy }),
        updatedAt: record.updatedAt,
        asked: { ...asked, callerMayAnswer: true },
      });
    }
  }
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
