import { shortStateName, type TaskState } from "../../schemas/a2a.ts";
import type { RunEvent } from "../../schemas/run.ts";
import { RunEventMetadataSchema, type StepProgress } from "../../schemas/run.ts";

const BAR_WIDTH = 10;

/** One line for a status change, as `loom submit --watch` prints it. */
export function statusLine(event: RunEvent): string | undefined {
  if (!("statusUpdate" in event)) return undefined;
  const { status, metadata } = event.statusUpdate;
  const time = (status.timestamp ?? new Date().toISOString()).slice(11, 19);
  const text = status.message?.parts.flatMap((part) => ("text" in part ? [part.text] : [])).join(" ") ?? "";
  const detail = RunEventMetadataSchema.safeParse(metadata ?? {}).data;
  if (detail?.progress !== undefined && detail.stepId !== undefined) {
    return `${time}  ${shortStateName(status.state).padEnd(14)} ${progressBar(detail.stepId, detail.progress)}`;
  }
  const error = detail?.error;
  const rule = typeof error?.details?.rule === "string" ? ` [rule: ${error.details.rule}]` : "";
  const code = error === undefined ? "" : ` (${error.code})`;
  return `${time}  ${shortStateName(status.state).padEnd(14)} ${text}${code}${rule}`;
}

/**
 * `[#####-----] 50% step slow: halfway`; without a total (the server does not know it) the bar
 * cannot fill, so only the count shows.
 */
export function progressBar(stepId: string, progress: StepProgress): string {
  const message = progress.message === undefined ? "" : `: ${progress.message}`;
  if (progress.total === undefined || progress.total <= 0) {
    return `[${"?".repeat(BAR_WIDTH)}] ${progress.progress} step ${stepId}${message}`;
  }
  const share = Math.min(1, Math.max(0, progress.progress / progress.total));
  const filled = Math.round(share * BAR_WIDTH);
  const percent = `${Math.round(share * 100)}%`.padStart(4);
  return `[${"#".repeat(filled)}${"-".repeat(BAR_WIDTH - filled)}] ${percent} step ${stepId}${message}`;
}

export function formatJson(value: unknown): string {
  return JSON.stringify(value, null, 2);
}

export function stateName(state: TaskState): string {
  return shortStateName(state);
}

/** Left-aligned columns for list commands. */
export function table(header: string[], rows: string[][]): string {
  const widths = header.map((title, column) =>
    Math.max(title.length, ...rows.map((row) => (row[column] ?? "").length)),
  );
  const line = (cells: string[]) =>
    cells
      .map((cell, column) => (column === cells.length - 1 ? cell : cell.padEnd(widths[column] ?? 0)))
      .join("  ")
      .trimEnd();
  return [line(header), ...rows.map(line)].join("\n");
}
