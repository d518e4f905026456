import { setFlagsFromString } from "node:v8";

// V8's non-backtracking engine, for regular expressions with the `l` flag only: every other
// regular expression in the process keeps the usual engine.
setFlagsFromString("--enable-experimental-regexp-engine");

/**
 * The regular expressions of a caller's JSONata (`/(a+)+$/`), run in time linear in their input:
 * a backtracking engine would let one expression hold the event loop for minutes. Patterns the
 * linear engine cannot run (backreferences, lookarounds, the `i` flag) are refused with a message
 * saying so, not run the slow way.
 */
export class LinearRegExp extends RegExp {
  constructor(pattern: RegExp) {
    try {
      super(pattern.source, `${pattern.flags}l`);
    } catch {
      throw Object.assign(
        new Error(
          `regular expression /${pattern.source}/${pattern.flags.replace("g", "")} cannot run in linear time: backreferences, lookarounds and the i flag are not supported (use $lowercase for case)`,
        ),
        { code: "LOOM0002" },
      );
    }
  }
}
