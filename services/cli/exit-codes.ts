import { TaskState } from "../../schemas/a2a.ts";

/** What `loom` exits with, so scripts can tell a failed run from a refused one. */
export const ExitCode = {
  OK: 0,
  /** The run failed or was canceled, or the command itself could not do its work. */
  FAILED: 1,
  /** Policy rejected the run or one of its calls. */
  REJECTED: 2,
} as const;
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];

export function exitCodeForState(state: TaskState): ExitCode {
  if (state === TaskState.COMPLETED) return ExitCode.OK;
  if (state === TaskState.REJECTED) return ExitCode.REJECTED;
  return ExitCode.FAILED;
}
