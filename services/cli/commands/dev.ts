import { type AddressInfo, createServer } from "node:net";
import { resolve } from "node:path";
import { AuthorizationError, connect, type NatsConnection } from "@nats-io/transport-node";
import { NATS_PASSWORD_VARIABLES, type NatsPasswordFile, NatsUser } from "../../../schemas/nats-users.ts";
import { ensureDevIssuerKey, issueDevToken } from "../../kit/dev-issuer.ts";
import { DEFAULT_A2A_PORT, type LogFormat, type Telemetry } from "../../kit/index.ts";
import { natsServerOptions } from "../../kit/nats-url.ts";
import { exportTo, startDevJaeger } from "../dev-jaeger.ts";
import { ExitCode } from "../exit-codes.ts";
import type { LaunchedJaeger } from "../jaeger.ts";
import {
  acceptsConnections,
  type LaunchedNatsServer,
  launchNatsServer,
  stopProcess,
} from "../nats-server.ts";
import { ensureNatsPasswords, natsUrlAs, natsUsersFile } from "../nats-users.ts";
import { startStack, waitUntilReady } from "../stack.ts";
import { submitCommand } from "./submit.ts";

const REPO_ROOT = resolve(import.meta.dirname, "../../..");
/** The users and subject permissions of production, in dev mode too. */
export const NATS_CONF = resolve(REPO_ROOT, "infra/nats/nats-server.conf");
/** The same users, with JetStream fsyncing every write before acknowledging it, for `--nats-sync`. */
export const SYNC_ALWAYS_CONF = resolve(REPO_ROOT, "infra/nats/sync-always.conf");
const DEMO_TOOLS = ["time.get_time", "crm.get_contact"];

export interface DevOptions {
  natsUrl: string | undefined;
  demo: boolean;
  /** Local data dir (`.loom/`): the NATS store, the users' passwords, the dev signing key, logs. */
  dataDir: string;
  /** Where to look for a local NATS, and where to start one. */
  natsPort: number;
  /** `LOOM_NATS_<USER>_PASSWORD` from the environment, which win over the data dir's. */
  passwords: Partial<Record<string, string>>;
  /** Start nats-server with `sync_interval: always` (only when this command starts it). */
  natsSync: boolean;
  /** How the services write their log files. */
  logFormat: LogFormat;
  telemetry: Telemetry;
  /** `--jaeger <binary>` names the Jaeger to start, `--no-jaeger` (false) starts none. */
  jaeger: string | false | undefined;
  /** The A2A edge's port (also the MCP gateway's); unset, 7410 or a free one when that is taken. */
  a2aPort: number | undefined;
  /** A server list of the user's own: the demo servers (and so the demo run) may not be there. */
  mcpServers: string | undefined;
}

/**
 * `npm start`: find or start NATS, start every service as its own NATS user, run the demo
 * workflow, then stay up until Ctrl-C and shut everything down cleanly.
 */
export async function devCommand(options: DevOptions): Promise<ExitCode> {
  if (options.natsUrl !== undefined && !(await reachable(options.natsUrl))) {
    console.error(
      `cannot reach NATS at ${natsServerOptions(options.natsUrl).servers.join(",")} (NATS_URL): start it, or unset NATS_URL to let \`npm start\` use localhost:${options.natsPort} or start nats-server itself. Nothing was started.`,
    );
    return ExitCode.FAILED;
  }
  const passwords = await resolvePasswords(options);
  const storeDir = resolve(options.dataDir, "nats");
  const localUrl = `nats://127.0.0.1:${options.natsPort}`;
  let natsServer: LaunchedNatsServer | undefined;
  let url = options.natsUrl;
  if (url === undefined && (await acceptsConnections(options.natsPort))) url = localUrl;
  if (url === undefined) {
    natsServer = await startOwnNats(storeDir, options.natsPort, passwords, options.natsSync);
    if (natsServer === undefined) return ExitCode.FAILED;
    url = natsServer.url;
  }
  const bare = natsServerOptions(url).servers.join(",");
  const urlAs = (user: NatsUser) => natsUrlAs(url, user, passwords[NATS_PASSWORD_VARIABLES[user]]);
  console.log(
    `NATS      ${bare}${natsServer === undefined ? "" : ` (started here with the users of infra/nats/nats-server.conf, data in ${storeDir})`}`,
  );
  if (natsServer === undefined && !(await checkUsers(bare, urlAs(NatsUser.SUBMITTER), options.dataDir))) {
    return ExitCode.FAILED;
  }

  let jaeger: LaunchedJaeger | undefined;
  try {
    jaeger = await startDevJaeger(options.jaeger);
  } catch (error) {
    console.error(error instanceof Error ? error.message : String(error));
    if (natsServer !== undefined) await stopProcess(natsServer.child);
    return ExitCode.FAILED;
  }

  const logDir = resolve(options.dataDir, "logs");
  const a2aPort = options.a2aPort ?? (await portOrFree(DEFAULT_A2A_PORT));
  const stack = await startStack({
    natsUrl: urlAs,
    logDir,
    env: {
      LOG_FORMAT: options.logFormat,
      LOOM_A2A_PORT: String(a2aPort),
      ...(jaeger === undefined ? {} : exportTo(jaeger)),
    },
  });
  console.log(
    `services  ${stack.services.map((service) => service.name).join(", ")}, each as its own NATS user (logs in ${logDir})`,
  );
  const shutdown = onlyOnce(async () => {
    console.log("\nshutting down…");
    await stack.stop();
    if (jaeger !== undefined) await stopProcess(jaeger.child);
    if (natsServer !== undefined) await stopProcess(natsServer.child);
    console.log("stopped");
  });
  process.once("SIGINT", () => void shutdown().then(() => process.exit(0)));
  process.once("SIGTERM", () => void shutdown().then(() => process.exit(0)));

  // Custom servers: wait for the worker, not for the demo servers' tools.
  const demoServers = options.mcpServers === undefined;
  // Readiness asks policy and the agents directly, which only a service's user may.
  let nc: NatsConnection | undefined;
  try {
    nc = await connect({ ...natsServerOptions(urlAs(NatsUser.ORCHESTRATOR)), timeout: 5_000 });
    await waitUntilReady(nc, { tools: demoServers ? DEMO_TOOLS : [], timeoutMs: 60_000, stack });
  } catch (error) {
    console.error(`${error instanceof Error ? error.message : String(error)}; see the logs in ${logDir}`);
    await nc?.close();
    await shutdown();
    return ExitCode.FAILED;
  }
  await nc.close();
  const edge = `http://127.0.0.1:${a2aPort}`;
  console.log(
    `A2A       ${edge}/.well-known/agent-card.json (JSON-RPC ${edge}/a2a/jsonrpc, HTTP+JSON ${edge}/a2a/rest)`,
  );
  console.log(`MCP       ${edge}/mcp (Streamable HTTP, bearer token)`);
  console.log(`console   ${edge}/console (dev sign-in: pick a subject and a role)`);
  console.log("ready\n");

  if (options.demo && !demoServers) {
    console.log(
      `demo      skipped: LOOM_MCP_SERVERS=${options.mcpServers} replaces the demo servers hello needs`,
    );
  } else if (options.demo) {
    const token = await issueDevToken(await ensureDevIssuerKey(options.dataDir), {
      sub: "demo",
      roles: ["analyst"],
      ttlSeconds: 3600,
    });
    console.log(
      'demo      loom submit hello --input \'{"contactId":"c-1"}\' --watch   (as demo, role analyst)',
    );
    await submitCommand("hello", {
      nats: urlAs(NatsUser.SUBMITTER),
      token,
      input: '{"contactId":"c-1"}',
      watch: true,
      json: false,
      context: undefined,
      telemetry: options.telemetry,
    });
  }
  const exportUrl = bare === "nats://127.0.0.1:4222" ? "" : `NATS_URL=${bare} `;
  console.log(
    `\nLoom is running. In another terminal (the CLI reads its NATS user from ${natsUsersFile(options.dataDir)}):\n` +
      `  export ${exportUrl}LOOM_TOKEN=$(npx loom token issue --sub you --role analyst)`,
  );
  console.log('  npx loom submit hello --input \'{"contactId":"c-2"}\' --watch\nCtrl-C stops everything.');
  await new Promise<never>(() => {});
  return ExitCode.OK;
}

/**
 * Whether a NATS answers at `url`. One that refuses the credentials answers too: `checkUsers`
 * explains that case once the passwords are known.
 */
async function reachable(url: string): Promise<boolean> {
  let nc: NatsConnection | undefined;
  try {
    nc = await connect({ ...natsServerOptions(url), timeout: 1_000, maxReconnectAttempts: 0 });
    return true;
  } catch (error) {
    return error instanceof AuthorizationError;
  } finally {
    await nc?.close();
  }
}

/** The data dir's passwords (made on first use), each replaced by its variable when that is set. */
async function resolvePasswords(options: DevOptions): Promise<NatsPasswordFile> {
  const passwords = { ...(await ensureNatsPasswords(options.dataDir)) };
  for (const variable of Object.values(NATS_PASSWORD_VARIABLES)) {
    const fromEnv = options.passwords[variable];
    if (fromEnv !== undefined && fromEnv !== "") passwords[variable] = fromEnv;
  }
  return passwords;
}

/**
 * A NATS that Loom did not start must know Loom's users: say which, and where their passwords
 * are, when it refuses them; warn when it has no users at all (anyone on it can mint grants).
 */
async function checkUsers(bare: string, submitterUrl: string, dataDir: string): Promise<boolean> {
  let nc: NatsConnection | undefined;
  try {
    nc = await connect({ ...natsServerOptions(submitterUrl), timeout: 5_000, maxReconnectAttempts: 0 });
    if (nc.info?.auth_required !== true) {
      console.warn(
        `warning   the NATS at ${bare} has no users: anyone who reaches it can write grant keys and policy and forge ` +
          "run events. Stop it and `npm start` starts one with the users of infra/nats/nats-server.conf.",
      );
    }
    return true;
  } catch (error) {
    if (!(error instanceof AuthorizationError)) {
      console.error(
        `cannot connect to NATS at ${bare}: ${error instanceof Error ? error.message : String(error)}`,
      );
      return false;
    }
    const file = natsUsersFile(dataDir);
    console.error(
      `The NATS at ${bare} was not started by Loom and refused its users. Loom connects with the users of ` +
        `infra/nats/nats-server.conf (${Object.keys(NATS_PASSWORD_VARIABLES).join(", ")}), each service as its ` +
        `own, with the passwords in ${file} unless LOOM_NATS_<USER>_PASSWORD says otherwise. Either stop that ` +
        "NATS (then `npm start` starts its own), or run it with those users:\n" +
        `  set -a; . ${file}; set +a; nats-server -js -c infra/nats/nats-server.conf`,
    );
    return false;
  } finally {
    await nc?.close();
  }
}

async function startOwnNats(
  storeDir: string,
  port: number,
  passwords: NatsPasswordFile,
  sync: boolean,
): Promise<LaunchedNatsServer | undefined> {
  try {
    const conf = sync ? SYNC_ALWAYS_CONF : NATS_CONF;
    return await launchNatsServer({ storeDir, port, args: ["-c", conf], env: passwords });
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

/** `port` when nothing listens on it, else one the kernel picks (a second stack on the host). */
function portOrFree(port: number): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const probe = createServer();
    probe.once("error", (error: NodeJS.ErrnoException) => {
      if (error.code !== "EADDRINUSE") reject(error);
      else resolvePort(portOrFree(0));
    });
    probe.listen(port, () => {
      const { port: bound } = probe.address() as AddressInfo;
      probe.close(() => resolvePort(bound));
    });
  });
}
