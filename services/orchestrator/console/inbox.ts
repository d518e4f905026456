import { TaskState } from "../../../schemas/a2a.ts";
import type { InboxItem } from "../../../schemas/console.ts";
import { ErrorCode } from "../../../schemas/errors.ts";
import { PolicyAction, type Principal } from "../../../schemas/policy.ts";
import { authenticate, LoomError, permitted } from "../../kit/index.ts";
import { ALL_PERSONAL_DATA } from "../../kit/masking.ts";
import { accessRun, maskedWaitingInput, type RunAccessOptions } from "../run-access.ts";
import { type AskedInput, waitingInputs } from "../step-timeline.ts";

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
  const candidates: { item: Omit<InboxItem, "asked">; asked: AskedInput }[] = [];
  for await (const runId of await options.runs.keys()) {
    const stored = await options.runs.get(runId);
    if (stored?.record.state !== TaskState.INPUT_REQUIRED) continue;
    const { record } = stored;
    for (const asked of waitingInputs(record)) {
      if (asked.roles.length > 0 && !asked.roles.some((role) => principal.roles.includes(role))) continue;
      candidates.push({
        item: {
          runId: record.runId,
          workflowId: record.workflowId,
          state: record.state,
          ...(record.startedBy === undefined ? {} : { startedBy: record.startedBy }),
          updatedAt: record.updatedAt,
        },
        asked: { ...asked, callerMayAnswer: true },
      });
    }
  }
  const allowed = await permitted(
    options.nc,
    authorization,
    candidates.map(({ item }) => ({
      action: PolicyAction.RUNS_APPROVE,
      target: item.workflowId,
      ...(item.startedBy === undefined ? {} : { startedBy: item.startedBy }),
    })),
    options.policyTimeoutMs,
  );
  const items = await Promise.all(
    candidates
      .filter((_candidate, index) => allowed[index] === true)
      .map((candidate) => maskedForApprover(options, candidate, authorization)),
  );
  return { principal, items: items.sort((a, b) => b.updatedAt.localeCompare(a.updatedAt)) };
}

/**
 * The question as the caller may see it: as asked when it may read the run unmasked; rendered from
 * masked data and masked as for a reader of the run otherwise, and of all personal data when it may
 * not read the run at all (a workflow's prompt may quote earlier steps' data, which the run's
 * reader policy governs).
 */
async function maskedForApprover(
  options: RunAccessOptions,
  candidate: { item: Omit<InboxItem, "asked">; asked: AskedInput },
  authorization: string | undefined,
): Promise<InboxItem> {
  const obligations = await accessRun(
    options,
    candidate.item.runId,
    PolicyAction.RUNS_READ,
    authorization,
  ).then(
    (access) => access.obligations,
    (error: unknown) => {
      if (error instanceof LoomError && error.code === ErrorCode.RUN_NOT_FOUND) return ALL_PERSONAL_DATA;
      throw error;
    },
  );
  return { ...candidate.item, asked: maskedWaitingInput(candidate.asked, obligations) };
}
