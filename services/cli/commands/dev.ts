import { resolve } from "node:path";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { ensureDevIssuerKey, issueDevToken } from "../../kit/dev-issuer.ts";
import type { LogFormat, Telemetry } from "../../kit/index.ts";
import { ExitCode } from "../exit-codes.ts";
import { type LaunchedNatsServer, launchNatsServer, stopProcess } from "../nats-server.ts";
import { startStack, waitUntilReady } from "../stack.ts";
import { submitCommand } from "./submit.ts";

const REPO_ROOT = resolve(import.meta.dirname, "../../..");
const DATA_DIR = resolve(REPO_ROOT, ".loom");
const NATS_STORE_DIR = resolve(DATA_DIR, "nats");
const LOCAL_NATS = "nats://127.0.0.1:4222";
/** JetStream that fsyncs every write before acknowledging it, for `--nats-sync`. */
export const SYNC_ALWAYS_CONF = resolve(REPO_ROOT, "infra/nats/sync-always.conf");
const DEMO_TOOLS = ["time.get_time", "crm.get_contact"];

/**
 * `npm start`: find or start NATS, start every service, run the demo workflow, then stay up
 * until Ctrl-C and shut everything down cleanly.
 */
export async function devCommand(options: {
  natsUrl: string | undefined;
  demo: boolean;
  /** Start nats-server with `sync_interval: always` (only when this command starts it). */
  natsSync: boolean;
  /** How the services write their log files. */
  logFormat: LogFormat;
  telemetry: Telemetry;
}): Promise<ExitCode> {
  let natsServer: LaunchedNatsServer | undefined;
  let url = options.natsUrl ?? ((await reachable(LOCAL_NATS)) ? LOCAL_NATS : undefined);
  if (url === undefined) {
    natsServer = await startOwnNats(options.natsSync);
    if (natsServer === undefined) return ExitCode.FAILED;
    url = natsServer.url;
  }
  console.log(
    `NATS      ${url}${natsServer === undefined ? "" : ` (started here, data in ${NATS_STORE_DIR})`}`,
  );

  const logDir = resolve(DATA_DIR, "logs");
  const stack = await startStack({ natsUrl: url, logDir, env: { LOG_FORMAT: options.logFormat } });
  console.log(`services  ${stack.services.map((service) => service.name).join(", ")} (logs in ${logDir})`);
  const shutdown = onlyOnce(async () => {
    console.log("\nshutting down…");
    await stack.stop();
    if (natsServer !== undefined) await stopProcess(natsServer.child);
    console.log("stopped");
  });
  process.once("SIGINT", () => void shutdown().then(() => process.exit(0)));
  process.once("SIGTERM", () => void shutdown().then(() => process.exit(0)));

  const nc = await connect({ servers: url });
  try {
    await waitUntilReady(nc, { tools: DEMO_TOOLS, timeoutMs: 60_000, stack });
  } catch (error) {
    console.error(`${error instanceof Error ? error.message : String(error)}; see the logs in ${logDir}`);
    await nc.close();
    await shutdown();
    return ExitCode.FAILED;
  }
  await nc.close();
  console.log("ready\n");

  if (options.demo) {
    const token = await issueDevToken(await ensureDevIssuerKey(DATA_DIR), {
      sub: "demo",
      roles: ["analyst"],
      ttlSeconds: 3600,
    });
    console.log(
      'demo      loom submit hello --input \'{"contactId":"c-1"}\' --watch   (as demo, role analyst)',
    );
    await submitCommand("hello", {
      nats: url,
      token,
      input: '{"contactId":"c-1"}',
      watch: true,
      json: false,
      context: undefined,
      telemetry: options.telemetry,
    });
  }
  console.log(
    `\nLoom is running. In another terminal:\n  export NATS_URL=${url} LOOM_TOKEN=$(npx loom token issue --sub you --role analyst)`,
  );
  console.log('  npx loom submit hello --input \'{"contactId":"c-2"}\' --watch\nCtrl-C stops everything.');
  await new Promise<never>(() => {});
  return ExitCode.OK;
}

async function reachable(url: string): Promise<boolean> {
  let nc: NatsConnection | undefined;
  try {
    nc = await connect({ servers: url, timeout: 1_000, maxReconnectAttempts: 0 });
    return true;
  } catch {
    return false;
  } finally {
    await nc?.close();
  }
}

async function startOwnNats(sync: boolean): Promise<LaunchedNatsServer | undefined> {
  try {
    return await launchNatsServer({
      storeDir: NATS_STORE_DIR,
      ...(sync ? { args: ["-c", SYNC_ALWAYS_CONF] } : {}),
    });
  } catch (error) {
    const notInstalled = error instanceof Error && "code" in error && error.code === "ENOENT";
    console.error(
      notInstalled
        ? "Loom needs NATS with JetStream. Set NATS_URL to one, run one on localhost:4222, or install nats-server " +
            "2.11 or newer (`go install github.com/nats-io/nats-server/v2@v2.15.3`, or brew install nats-server) and run `npm start` again."
        : `could not start nats-server: ${error instanceof Error ? error.message : String(error)}`,
    );
    return undefined;
  }
}

function onlyOnce<T>(work: () => Promise<T>): () => Promise<T> {
  let result: Promise<T> | undefined;
  return () => {
    result ??= work();
    return result;
  };
}
