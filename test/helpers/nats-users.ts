import { randomBytes } from "node:crypto";
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  type NatsConnection,
  type NodeConnectionOptions,
  PermissionViolationError,
} from "@nats-io/transport-node";
import { inboxPrefixOf, NATS_PASSWORD_VARIABLES, type NatsUser } from "../../schemas/nats-users.ts";
import { NATS_CONF } from "../../services/cli/commands/dev.ts";
import { ensureNatsPasswords, natsUrlAs } from "../../services/cli/nats-users.ts";
import { type ServiceName, type Stack, startStack } from "../../services/cli/stack.ts";
import { connectTo, type NatsServer, startNatsServer } from "./nats-server.ts";
import { testServiceEnv } from "./service-env.ts";
import { TEST_AUTH_ENV } from "./tokens.ts";

export { NatsUser } from "../../schemas/nats-users.ts";

/**
 * A user that exists only in tests: it may read every stream and bucket and subscribe to every
 * subject, but publish nothing a service acts on (no KV write, no agent task, no stream change).
 * Tests inspect internals through it; whatever a test does, it does as a real user.
 */
export const OBSERVER = "observer";
const OBSERVER_PASSWORD_VARIABLE = "LOOM_NATS_OBSERVER_PASSWORD";
const OBSERVER_USER = `
    { user: ${OBSERVER}, password: $${OBSERVER_PASSWORD_VARIABLE}, permissions: {
      publish: { allow: ["_INBOX.>", "$JS.API.INFO", "$JS.API.STREAM.INFO.>", "$JS.API.STREAM.NAMES",
                         "$JS.API.STREAM.LIST", "$JS.API.STREAM.MSG.GET.>", "$JS.API.DIRECT.GET.>",
                         "$JS.API.CONSUMER.CREATE.>", "$JS.API.CONSUMER.INFO.>", "$JS.API.CONSUMER.DELETE.>",
                         "$JS.API.CONSUMER.MSG.NEXT.>", "$JS.API.CONSUMER.NAMES.>", "$JS.API.CONSUMER.LIST.>",
                         "$JS.ACK.>", "$JS.FC.>"] }
      subscribe: { allow: [">"] } } }`;

/**
 * The operator's own NATS user, which no Loom deployment hands out: the one that may change a
 * stream's configuration (`loom streams replicate --nats nats://operator:…@host`). None of Loom's
 * users may, policy-admin included.
 */
export const OPERATOR = "operator";
const OPERATOR_PASSWORD_VARIABLE = "LOOM_NATS_OPERATOR_PASSWORD";
const OPERATOR_USER = `
    { user: ${OPERATOR}, password: $${OPERATOR_PASSWORD_VARIABLE}, permissions: {
      publish: { allow: ["$JS.API.INFO", "$JS.API.STREAM.INFO.>", "$JS.API.STREAM.NAMES", "$JS.API.STREAM.LIST",
                         "$JS.API.STREAM.UPDATE.>"] }
      subscribe: { allow: ["_INBOX.${OPERATOR}.>"] } } }`;

/** What infra/nats/sync-always.conf adds to the users' conf, which a copy cannot `include`. */
const SYNC_ALWAYS = "jetstream {\n  sync_interval: always\n}\n";

/** A user of infra/nats/nats-server.conf, the test's read-only observer, or the operator. */
export type TestNatsUser = NatsUser | typeof OBSERVER | typeof OPERATOR;

/** A nats-server with Loom's users and subject permissions, each user with a fresh password. */
export interface NatsUsersServer extends AsyncDisposable {
  readonly server: NatsServer;
  /** Holds `nats-users.env` as `npm start` writes it: the CLI reads it with `LOOM_DATA_DIR` set here. */
  readonly dataDir: string;
  /** `nats://<user>:<password>@127.0.0.1:<port>`, for a service or the CLI's `--nats`. */
  urlAs(user: TestNatsUser): string;
  password(user: TestNatsUser): string;
  connectAs(user: TestNatsUser, options?: NodeConnectionOptions): Promise<NatsConnection>;
  /**
   * Starts each service as a stack of its own, connected as the NATS user of its name, so every
   * service lives under its own permissions. The caller stops the stacks.
   */
  startServices(
    services: readonly ServiceName[],
    options: { logDir: string; env?: Record<string, string> },
  ): Promise<Stack[]>;
}

/** A copy of infra/nats/nats-server.conf with the observer, and what a server of it needs. */
export interface NatsUsersConf {
  conf: string;
  /** The passwords, for the server's environment alone. */
  env: Record<string, string>;
  password(user: TestNatsUser): string;
}

/**
 * Writes `nats-server.conf` with the observer added into `dataDir` (beside `nats-users.env` as
 * `npm start` writes it), followed by `extra` config. `include` would resolve the production
 * conf's paths, but cannot add to its users list: it is copied.
 */
export async function writeNatsUsersConf(dataDir: string, extra: string): Promise<NatsUsersConf> {
  const passwords = await ensureNatsPasswords(dataDir);
  const observerPassword = `p${randomBytes(24).toString("hex")}`;
  const operatorPassword = `p${randomBytes(24).toString("hex")}`;
  const conf = join(dataDir, "nats-server.conf");
  const production = await readFile(NATS_CONF, "utf8");
  if (!production.includes("users: ["))
    throw new Error(`${NATS_CONF} has no users list to add the observer to`);
  await writeFile(
    conf,
    `${production.replace("users: [", `users: [${OBSERVER_USER}${OPERATOR_USER}`)}\n${extra}`,
  );
  return {
    conf,
    env: {
      ...passwords,
      [OBSERVER_PASSWORD_VARIABLE]: observerPassword,
      [OPERATOR_PASSWORD_VARIABLE]: operatorPassword,
    },
    password: (user) =>
      user === OBSERVER
        ? observerPassword
        : user === OPERATOR
          ? operatorPassword
          : passwords[NATS_PASSWORD_VARIABLES[user]],
  };
}

/**
 * Starts nats-server with infra/nats/nats-server.conf as `npm start` does: the passwords made by
 * the same code, into a data dir of its own, and given to the server alone (never to services).
 * `syncAlways` adds what infra/nats/sync-always.conf adds (`loom dev --nats-sync`): every write
 * fsynced before its PubAck.
 */
export async function startNatsWithUsers(options: { syncAlways?: boolean } = {}): Promise<NatsUsersServer> {
  const dataDir = await mkdtemp(join(tmpdir(), "loom-nats-users-"));
  let users: NatsUsersConf;
  let server: NatsServer;
  try {
    users = await writeNatsUsersConf(dataDir, options.syncAlways === true ? SYNC_ALWAYS : "");
    server = await startNatsServer({ args: ["-c", users.conf], env: users.env });
  } catch (error) {
    await rm(dataDir, { recursive: true, force: true });
    throw error;
  }
  const { password } = users;
  const urlAs = (user: TestNatsUser) => natsUrlAs(server.url, user, password(user));
  return {
    server,
    dataDir,
    urlAs,
    password,
    connectAs: (user, options = {}) =>
      connectTo(server.url, { user, pass: password(user), inboxPrefix: inboxPrefixOf(user), ...options }),
    async startServices(services, { logDir, env = {} }) {
      const stacks: Stack[] = [];
      try {
        for (const service of services) {
          stacks.push(
            await startStack({
              natsUrl: urlAs(service),
              logDir,
              services: [service],
              env: { ...testServiceEnv(), ...TEST_AUTH_ENV, LOOM_HTTP_PORT: "0", ...env },
            }),
          );
        }
      } catch (error) {
        // The caller never sees these stacks, so they are stopped here.
        await Promise.all(stacks.map((stack) => stack.stop()));
        throw error;
      }
      return stacks;
    },
    async [Symbol.asyncDispose]() {
      try {
        await server[Symbol.asyncDispose]();
      } finally {
        await rm(dataDir, { recursive: true, force: true });
      }
    },
  };
}

/** Every service log in `logDir`, joined: tests look in it for nats-server's "Permissions Violation". */
export async function serviceLogs(logDir: string): Promise<string> {
  const logs = await Promise.all((await readdir(logDir)).map((name) => readFile(join(logDir, name), "utf8")));
  return logs.join("\n");
}

/**
 * Watches `nc` for the permission violations NATS reports (`publish to <subject>`, `subscription
 * to <subject>`) from now on. A message NATS refused never reached a handler, so a test that sends
 * to a service checks none was. The function returned flushes `nc` (the server reports a violation
 * before it answers the flush's ping) and, once the report has gone through the connection's
 * status iterator, gives every violation so far.
 */
export function permissionViolations(nc: NatsConnection): () => Promise<readonly string[]> {
  const violations: string[] = [];
  void (async () => {
    for await (const status of nc.status()) {
      if (status.type === "error" && status.error instanceof PermissionViolationError) {
        violations.push(`${status.error.operation} to ${status.error.subject}`);
      }
    }
  })();
  return async () => {
    await nc.flush();
    await new Promise((resolve) => setImmediate(resolve));
    return [...violations];
  };
}

/**
 * A request NATS refuses as a publish violation: no answer comes, and `violations` (from
 * `permissionViolations` on the same connection) reports the publish to `subject`.
 */
export async function refusedRequest(
  nc: NatsConnection,
  violations: () => Promise<readonly string[]>,
  subject: string,
  body: unknown,
): Promise<boolean> {
  const answered = await nc
    .request(subject, body === undefined ? "" : JSON.stringify(body), { timeout: 1_500 })
    .then(
      () => true,
      () => false,
    );
  return !answered && (await violations()).includes(`publish to ${subject}`);
}
