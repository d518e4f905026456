import { flushCompileCache } from "node:module";
import { performance } from "node:perf_hooks";
import type { Logger } from "./logger.ts";

/** The log line of a promise rejection nothing handled; the fuzz test looks for it in service logs. */
export const UNHANDLED_REJECTION = "unhandled rejection";

/**
 * Runs a service until SIGINT or SIGTERM, then closes it (drain, flush) and exits. A start-up
 * failure is logged with its code and exits non-zero instead of leaving a half-started process.
 * A rejection nothing handled is a bug, but one request's: it is logged and the service goes on
 * serving the others.
 */
export async function runUntilSignalled(
  log: Logger,
  start: () => Promise<{ close(): Promise<void> }>,
): Promise<void> {
  process.on("unhandledRejection", (reason) => log.error({ err: reason }, UNHANDLED_REJECTION));
  let service: { close(): Promise<void> };
  try {
    service = await start();
    // Since the process started (module loading included): what a crash-looping replica loses.
    // The CPU it took says how much of that was the machine's load rather than the start's work.
    const cpu = process.cpuUsage();
    log.info(
      {
        startup_ms: Math.round(performance.now()),
        startup_cpu_ms: Math.round((cpu.user + cpu.system) / 1000),
      },
      "started",
    );
    // Written now, not at exit: a replica that is SIGKILLed still leaves its successor a warm cache.
    flushCompileCache();
  } catch (error) {
    log.fatal({ err: error }, "failed to start");
    process.exit(1);
  }
  let closing = false;
  const shutdown = async (signal: string) => {
    if (closing) return;
    closing = true;
    log.info({ signal }, "shutting down");
    try {
      await service.close();
      process.exit(0);
    } catch (error) {
      log.error({ err: error }, "unclean shutdown");
      process.exit(1);
    }
  };
  process.once("SIGINT", () => void shutdown("SIGINT"));
  process.once("SIGTERM", () => void shutdown("SIGTERM"));
}
