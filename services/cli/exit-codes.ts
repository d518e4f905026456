import { TaskState } from "../../schemas/a2a.ts";
import { ErrorCode } from "../../schemas/errors.ts";

/**
 * What `loom` exits with, the same for every command, so scripts can tell a refusal from a failure:
 *
 * | code | meaning |
 * |---|---|
 * | 0 | done: the command did its work; a watched run completed |
 * | 1 | failed: the run failed or was canceled, the input was wrong, or Loom could not do the work |
 * | 2 | refused: policy rejected the run, the request or one of its calls, or the token was refused |
 */
export const ExitCode = {
  OK: 0,
  /** The run failed or was canceled, or the command itself could not do its work. */
  FAILED: 1,
  /** Policy rejected the run, the command's request or one of its calls. */
  REJECTED: 2,
} as const;
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];

/** Errors that are a refusal (policy, or the caller's identity), not a failure. */
const REFUSALS: ReadonlySet<ErrorCode> = new Set([ErrorCode.POLICY_DENIED, ErrorCode.UNAUTHENTICATED]);

export function exitCodeForState(state: TaskState): ExitCode {
  if (state === TaskState.COMPLETED) return ExitCode.OK;
  if (state === TaskState.REJECTED) return ExitCode.REJECTED;
  return ExitCode.FAILED;
}

export function exitCodeForError(code: ErrorCode): ExitCode {
  return REFUSALS.has(code) ? ExitCode.REJECTED : ExitCode.FAILED;
}
