import type { RunEvent } from "../../../../schemas/run.ts";

/** One attempt of one step, as the run's events tell it. */
export interface StepRow {
  stepId: string;
  attempt: number;
  state: string;
  text: string;
  startedAt: string;
  durationMs: number | undefined;
  error: string | undefined;
}

/** An event's message text, if it has one. */
export function textOf(event: RunEvent): string {
  if (!("statusUpdate" in event)) return "";
  const parts = event.statusUpdate.status.message?.parts ?? [];
  return parts.map((part) => ("text" in part && typeof part.text === "string" ? part.text : "")).join(" ");
}

/**
 * Pure: the steps of a run from its events, one row per step and attempt, in the order they began;
 * a step the run has moved on from is `done` (or `failed` when it reported an error).
 * A step lasts from its first event until the run's next event after its last one (or `now` while
 * the run goes on).
 */
export function stepsOf(events: readonly RunEvent[], now: number | undefined): StepRow[] {
  const statuses = events.flatMap((event) => ("statusUpdate" in event ? [event.statusUpdate] : []));
  const rows = new Map<string, StepRow & { lastIndex: number }>();
  statuses.forEach((update, index) => {
    const stepId = update.metadata?.stepId;
    if (stepId === undefined) return;
    const attempt = update.metadata?.attempt ?? 1;
    const key = `${stepId}#${attempt}`;
    const timestamp = update.status.timestamp ?? "";
    const row = rows.get(key) ?? {
      stepId,
      attempt,
      state: update.status.state,
      text: "",
      startedAt: timestamp,
      durationMs: undefined,
      error: undefined,
      lastIndex: index,
    };
    row.state = update.status.state;
    row.text = textOf({ statusUpdate: update });
    row.lastIndex = index;
    if (update.metadata?.error !== undefined) row.error = update.metadata.error.message;
    rows.set(key, row);
  });
  return [...rows.values()].map(({ lastIndex, ...row }) => {
    const next = statuses[lastIndex + 1]?.status.timestamp;
    // A step the run has moved on from is over: failed when it reported an error, else done.
    if (next !== undefined) row.state = row.error === undefined ? "done" : "failed";
    const end = next === undefined ? now : Date.parse(next);
    return {
      ...row,
      durationMs: end === undefined ? undefined : Math.max(0, end - Date.parse(row.startedAt)),
    };
  });
}
