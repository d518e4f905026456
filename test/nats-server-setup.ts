import { findNatsServer } from "../services/cli/nats-server.ts";

/**
 * Vitest global setup: says once which nats-server the tests start (see `findNatsServer`), so a
 * run's log shows what its broker results were measured on.
 */
export default async function setup(): Promise<void> {
  const { path, version } = await findNatsServer();
  console.log(`nats-server: ${path === "nats-server" ? "the one on PATH" : path} (${version})`);
}
