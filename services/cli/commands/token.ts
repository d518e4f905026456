import { issueDevToken } from "../../kit/index.ts";
import { ExitCode } from "../exit-codes.ts";

/** `loom token issue`: prints a development token for `sub` with the given roles. */
export function tokenIssueCommand(options: { sub: string; role: string[] }): ExitCode {
  console.log(issueDevToken({ sub: options.sub, roles: options.role }));
  return ExitCode.OK;
}
