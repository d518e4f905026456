import { performance } from "node:perf_hooks";
import type { Logger } from "./logger.ts";

/**
 * Runs a service until SIGINT or SIGTERM, then closes it (drain, flush) and exits. A start-up
 * failure is logged with its code and exits non-zero instead of leaving a half-started process.
 */
export async function runUntilSignalled(
  log: Logger,
  start: () => Promise<{ close(): Promise<void> }>,
): Promise<void> {
  let service: { close(): Promise<void> };
  try {
    service = await start();
    // Since the process started (module loading included): what a crash-looping replica loses.
    log.info({ startup_ms: Math.round(performance.now()) }, "started");
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
