import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { parseEnv } from "node:util";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { NATS_PASSWORD_VARIABLES, NatsUser } from "../../schemas/nats-users.ts";
import { natsPasswordsCommand } from "../../services/cli/commands/nats.ts";
import { ExitCode } from "../../services/cli/exit-codes.ts";
import {
  ensureNatsPasswords,
  isLoopback,
  natsUrlAs,
  natsUrlFor,
  natsUserFile,
  natsUserFolders,
  natsUsersFile,
  readNatsPasswords,
} from "../../services/cli/nats-users.ts";
import { createLogger, LoomError } from "../../services/kit/index.ts";
import { connectNats } from "../../services/kit/nats.ts";

describe("nats users - the passwords of .loom/nats-users.env", () => {
  let dataDir: string;
  beforeEach(async () => {
    dataDir = await mkdtemp(join(tmpdir(), "loom-nats-users-unit-"));
  });
  afterEach(async () => {
    await rm(dataDir, { recursive: true, force: true });
  });

  it("nats users - made once with mode 0600, then reused as they are", async () => {
    const first = await ensureNatsPasswords(dataDir);
    expect(Object.keys(first)).toEqual(Object.values(NATS_PASSWORD_VARIABLES));
    expect(new Set(Object.values(first)).size).toBe(Object.values(first).length);
    expect((await stat(natsUsersFile(dataDir))).mode & 0o777).toBe(0o600);
    expect(await ensureNatsPasswords(dataDir)).toEqual(first);
  });

  it("nats users - `loom nats passwords` also writes each user's password alone, mode 0600, for that user's container", async () => {
    // A file left by hand with a wider mode is narrowed, and rewritten with the password it should hold.
    const stale = natsUserFile(dataDir, NatsUser.MCP_WORKER);
    await mkdir(dirname(stale), { recursive: true });
    await writeFile(stale, "LOOM_NATS_ACP_POLICY_PASSWORD=pstale000000000000000000000\n", { mode: 0o644 });
    const log = vi.spyOn(console, "log").mockImplementation(() => undefined);
    try {
      expect(await natsPasswordsCommand({ dataDir })).toBe(ExitCode.OK);
    } finally {
      log.mockRestore();
    }
    const all = await readNatsPasswords(dataDir);
    for (const [user, variable] of Object.entries(NATS_PASSWORD_VARIABLES)) {
      const file = natsUserFile(dataDir, user as NatsUser);
      expect((await stat(file)).mode & 0o777, file).toBe(0o600);
      expect((await stat(dirname(file))).mode & 0o777, dirname(file)).toBe(0o700);
      // Its own password and nothing else: no other user's variable, no other user's value.
      expect(parseEnv(await readFile(file, "utf8"))).toEqual({ [variable]: all?.[variable] });
    }
    expect(await readdir(natsUserFolders(dataDir))).toEqual(Object.keys(NATS_PASSWORD_VARIABLES).sort());
  });

  it("nats users - a deleted file is made again, with new passwords", async () => {
    const first = await ensureNatsPasswords(dataDir);
    await rm(natsUsersFile(dataDir));
    expect(await readNatsPasswords(dataDir)).toBeUndefined();
    const second = await ensureNatsPasswords(dataDir);
    expect(second.LOOM_NATS_SUBMITTER_PASSWORD).not.toBe(first.LOOM_NATS_SUBMITTER_PASSWORD);
  });

  it("nats users - a file that is not a set of passwords is a typed error that says what to do", async () => {
    await writeFile(natsUsersFile(dataDir), "LOOM_NATS_SUBMITTER_PASSWORD=1 starts with a digit\n");
    await expect(readNatsPasswords(dataDir)).rejects.toMatchObject({
      code: "CONFIG_INVALID",
      message: expect.stringContaining("delete it"),
    });
  });

  it("nats users - the CLI's user: the URL's own, else the variable, else the data dir for a local NATS", async () => {
    const passwords = await ensureNatsPasswords(dataDir);
    const fromFile = passwords.LOOM_NATS_POLICY_ADMIN_PASSWORD;
    const local = { url: "nats://127.0.0.1:4222", dataDir, passwords: {} };
    expect(await natsUrlFor(local, NatsUser.POLICY_ADMIN)).toBe(
      `nats://policy-admin:${fromFile}@127.0.0.1:4222`,
    );
    expect(
      await natsUrlFor({ ...local, passwords: { LOOM_NATS_SUBMITTER_PASSWORD: "penv" } }, NatsUser.SUBMITTER),
    ).toBe("nats://submitter:penv@127.0.0.1:4222");
    expect(await natsUrlFor({ ...local, url: "nats://me:mine@127.0.0.1:4222" }, NatsUser.SUBMITTER)).toBe(
      "nats://me:mine@127.0.0.1:4222",
    );
    // A NATS elsewhere never gets the local passwords.
    expect(await natsUrlFor({ ...local, url: "nats://nats.example:4222" }, NatsUser.SUBMITTER)).toBe(
      "nats://nats.example:4222",
    );
  });

  it("nats users - URLs: every server of a list gets the user; loopback is this machine only", () => {
    expect(natsUrlAs("nats://a:1,nats://b:2", "submitter", "p1")).toBe(
      "nats://submitter:p1@a:1,nats://submitter:p1@b:2",
    );
    expect(isLoopback("nats://127.0.0.1:4222")).toBe(true);
    expect(isLoopback("nats://localhost:4222,nats://[::1]:4223")).toBe(true);
    expect(isLoopback("nats://127.0.0.1:4222,nats://10.0.0.2:4222")).toBe(false);
  });
});

describe("nats users - a service's password from LOOM_NATS_PASSWORD_FILE", () => {
  const log = createLogger({ service: "orchestrator", level: "silent" });
  const refusal = (passwordFile: string) =>
    connectNats({ servers: "nats://127.0.0.1:1", name: NatsUser.ORCHESTRATOR, log, passwordFile }).then(
      () => "connected",
      (error: unknown) => (error instanceof LoomError ? `${error.code}: ${error.message}` : String(error)),
    );

  it("nats users - a missing file is CONFIG_INVALID naming the file and how to make it", async () => {
    const missing = join(tmpdir(), "loom-no-such-dir", "nats-users.env");
    expect(await refusal(missing)).toBe(
      `CONFIG_INVALID: LOOM_NATS_PASSWORD_FILE ${missing} cannot be read (ENOENT: no such file or directory, open '${missing}'): make it with \`loom nats passwords\``,
    );
  });

  it("nats users - a file without the service's valid password is CONFIG_INVALID naming the variable", async () => {
    const dir = await mkdtemp(join(tmpdir(), "loom-nats-password-file-"));
    try {
      const file = join(dir, "nats-users.env");
      await writeFile(
        file,
        `${NATS_PASSWORD_VARIABLES["acp-policy"]}=p${"a".repeat(30)}\nLOOM_NATS_ORCHESTRATOR_PASSWORD=short\n`,
      );
      expect(await refusal(file)).toBe(
        `CONFIG_INVALID: LOOM_NATS_PASSWORD_FILE ${file} has no valid LOOM_NATS_ORCHESTRATOR_PASSWORD: make the file again with \`loom nats passwords\``,
      );
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
