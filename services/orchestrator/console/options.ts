import type { JetStreamClient } from "@nats-io/jetstream";
import type { Logger } from "../../kit/index.ts";
import type { RunAccessOptions } from "../run-access.ts";
import type { RunChanges } from "./live.ts";

/** What the console's routes need: the run store and bus, and the few settings it shows. */
export interface ConsoleOptions extends RunAccessOptions {
  js: JetStreamClient;
  /** Changes to run records, which refresh the live run list and inbox. */
  changes: RunChanges;
  /** The registered workflows a run can be started from. */
  workflows: () => string[];
  /** Jaeger's web UI, to link a run's trace. */
  jaegerUi: string;
  /** Where the dev signing key is, when the stack runs in dev mode; undefined: no dev sign-in. */
  devSignInDataDir: string | undefined;
  log: Logger;
}
