import { randomBytes } from "node:crypto";
import { chmod, mkdir, readFile, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { parseEnv } from "node:util";
import { ErrorCode } from "../../schemas/errors.ts";
import {
  NATS_PASSWORD_VARIABLES,
  type NatsPasswordFile,
  NatsPasswordFileSchema,
  type NatsUser,
} from "../../schemas/nats-users.ts";
import { LoomError } from "../kit/index.ts";
import { natsServerOptions } from "../kit/nats-url.ts";

/**
 * The passwords of Loom's NATS users for a NATS that `npm start` (or a test) runs itself, in the
 * local data dir (`.loom/`, never committed). It is an env file, so a NATS started by hand can
 * take the same passwords: `set -a; . .loom/nats-users.env; set +a; nats-server -js -c infra/nats/nats-server.conf`.
 */
export function natsUsersFile(dataDir: string): string {
  return join(dataDir, "nats-users.env");
}

/** The users' passwords, generated (mode 0600) on first use and read as they are afterwards. */
export async function ensureNatsPasswords(dataDir: string): Promise<NatsPasswordFile> {
  const existing = await readNatsPasswords(dataDir);
  if (existing !== undefined) return existing;
  const passwords = NatsPasswordFileSchema.parse(
    Object.fromEntries(
      Object.values(NATS_PASSWORD_VARIABLES).map((variable) => [
        variable,
        `p${randomBytes(24).toString("hex")}`,
      ]),
    ),
  );
  const text = Object.entries(passwords)
    .map(([variable, password]) => `${variable}=${password}\n`)
    .join("");
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  try {
    await writeFile(natsUsersFile(dataDir), text, { flag: "wx", mode: 0o600 });
  } catch (error) {
    // Another `loom` made it a moment ago: its passwords are the ones the server has.
    if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
    return ensureNatsPasswords(dataDir);
  }
  return passwords;
}

/**
 * `.loom/nats-users/<user>/nats-password.env`: that user's password alone, so a deployment can hand
 * each service container its own folder (compose mounts it as a volume subpath) and no container
 * reads another user's password. nats-server keeps the combined file.
 */
export function natsUserFile(dataDir: string, user: NatsUser): string {
  return join(natsUserFolders(dataDir), user, "nats-password.env");
}

/** `.loom/nats-users`: a folder per user, each holding that user's `nats-password.env`. */
export function natsUserFolders(dataDir: string): string {
  return join(dataDir, "nats-users");
}

/** One file per user (`natsUserFile`, mode 0600 in a folder of mode 0700), written from the passwords as they are. */
export async function writeNatsUserFiles(dataDir: string, passwords: NatsPasswordFile): Promise<void> {
  for (const [user, variable] of Object.entries(NATS_PASSWORD_VARIABLES)) {
    const file = natsUserFile(dataDir, user as NatsUser);
    // A folder or file made before keeps its mode through mkdir and writeFile: the owner's alone,
    // the folder first, so no one else reaches the file while it is written.
    await mkdir(dirname(file), { recursive: true, mode: 0o700 });
    await chmod(dirname(file), 0o700);
    await writeFile(file, `${variable}=${passwords[variable]}\n`, { mode: 0o600 });
    await chmod(file, 0o600);
  }
}

/** `.loom/nats-cluster.env`: the password a NATS cluster's nodes route to each other with. */
export function natsClusterFile(dataDir: string): string {
  return join(dataDir, "nats-cluster.env");
}

/** The variable infra/nats-cluster/cluster.conf reads the route password from. */
export const ROUTE_PASSWORD_VARIABLE = "LOOM_NATS_ROUTE_PASSWORD";

/**
 * The cluster's route password, generated (mode 0600) on first use: only the nodes know it, so a
 * nats-server that reaches the route port cannot join the cluster. Kept apart from the users'
 * passwords, which services and the CLI read; nothing but the NATS nodes reads this one.
 */
export async function ensureRoutePassword(dataDir: string): Promise<void> {
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  try {
    await writeFile(
      natsClusterFile(dataDir),
      `${ROUTE_PASSWORD_VARIABLE}=p${randomBytes(24).toString("hex")}\n`,
      {
        flag: "wx",
        mode: 0o600,
      },
    );
  } catch (error) {
    // Made before: the nodes of a running cluster already route with it.
    if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
  }
}

/** The users' passwords from the data dir, or undefined when there is no file (yet). */
export async function readNatsPasswords(dataDir: string): Promise<NatsPasswordFile | undefined> {
  const file = natsUsersFile(dataDir);
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw error;
  }
  const parsed = NatsPasswordFileSchema.safeParse(parseEnv(text));
  if (!parsed.success) {
    throw new LoomError(
      ErrorCode.CONFIG_INVALID,
      `${file} is not a set of Loom NATS passwords (${parsed.error.issues[0]?.message}): delete it and start Loom again to make a new one`,
    );
  }
  return parsed.data;
}

/** `nats://host:port` as `nats://<user>:<password>@host:port`, for every server of a comma-separated list. */
export function natsUrlAs(url: string, user: string, password: string): string {
  const { servers } = natsServerOptions(url);
  const credentials = `${encodeURIComponent(user)}:${encodeURIComponent(password)}@`;
  return servers
    .map((server) => server.replace(/^([a-z]+:\/\/)?/i, (scheme) => `${scheme}${credentials}`))
    .join(",");
}

/** True when every server of the URL is on this machine, where a NATS of `.loom/` can be. */
export function isLoopback(url: string): boolean {
  return natsServerOptions(url).servers.every((server) => {
    const host = /^(?:[a-z]+:\/\/)?(\[[^\]]+\]|[^:/]+)/i.exec(server)?.[1] ?? "";
    return ["127.0.0.1", "localhost", "[::1]"].includes(host.toLowerCase());
  });
}

export interface NatsAccess {
  /** The URL as given (`--nats`, `NATS_URL`). */
  url: string;
  /** Local data dir whose `nats-users.env` holds the passwords of a NATS started by Loom. */
  dataDir: string;
  /** `LOOM_NATS_<USER>_PASSWORD` values from the environment; they win over the data dir's. */
  passwords: Partial<Record<string, string>>;
}

/**
 * The URL to connect to as `user`: as given when it names a user already, else with the user's
 * password from the environment, else (for a NATS on this machine) from the data dir, else as
 * given, for a NATS without users.
 */
export async function natsUrlFor(access: NatsAccess, user: NatsUser): Promise<string> {
  if (natsServerOptions(access.url).user !== undefined) return access.url;
  const variable = NATS_PASSWORD_VARIABLES[user];
  const fromEnv = access.passwords[variable];
  if (fromEnv !== undefined && fromEnv !== "") return natsUrlAs(access.url, user, fromEnv);
  if (!isLoopback(access.url)) return access.url;
  const fromFile = (await readNatsPasswords(access.dataDir))?.[variable];
  return fromFile === undefined ? access.url : natsUrlAs(access.url, user, fromFile);
}
