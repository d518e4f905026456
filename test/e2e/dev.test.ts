import { type ChildProcess, execFile, spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtemp, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NATS_PASSWORD_VARIABLES, NatsUser } from "../../schemas/nats-users.ts";
import { acceptsConnections } from "../../services/cli/nats-server.ts";
import { natsUsersFile, readNatsPasswords } from "../../services/cli/nats-users.ts";
import { REPO_ROOT } from "../helpers/loom.ts";
import { connectTo } from "../helpers/nats-server.ts";
import { startNatsWithUsers } from "../helpers/nats-users.ts";
import { freePort } from "../helpers/ports.ts";

/**
 * `npm start` (`loom dev`) as a user runs it, in a data dir and on a port of its own: it starts
 * nats-server with the users of infra/nats/nats-server.conf, and the demo completes through them.
 */
describe("e2e - npm start runs NATS with Loom's users", () => {
  let dataDir: string;
  let port: number;
  let dev: ChildProcess;
  let stdout = "";

  beforeAll(async () => {
    dataDir = await mkdtemp(join(tmpdir(), "loom-dev-"));
    port = await freePort();
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      LOOM_DATA_DIR: dataDir,
      LOOM_DEV_NATS_PORT: String(port),
      LOG_FORMAT: "json",
      // Free ports for the services' HTTP servers and the A2A edge, beside anything else running.
      LOOM_HTTP_PORT: "0",
      LOOM_A2A_PORT: "0",
    };
    delete env.NATS_URL;
    for (const variable of Object.values(NATS_PASSWORD_VARIABLES)) delete env[variable];
    dev = spawn(process.execPath, [join(REPO_ROOT, "services/cli/bin.ts"), "dev"], {
      cwd: REPO_ROOT,
      env,
      stdio: ["ignore", "pipe", "pipe"],
    });
    dev.stdout?.setEncoding("utf8").on("data", (chunk: string) => {
      stdout += chunk;
    });
    dev.stderr?.setEncoding("utf8").on("data", (chunk: string) => {
      stdout += chunk;
    });
    const deadline = Date.now() + 90_000;
    while (!stdout.includes("Loom is running") && dev.exitCode === null && Date.now() < deadline) {
      await sleep(200);
    }
  }, 120_000);
  afterAll(async () => {
    if (dev !== undefined && dev.exitCode === null) {
      const exited = once(dev, "exit");
      dev.kill("SIGTERM");
      await exited;
    }
    await rm(dataDir, { recursive: true, force: true });
  });

  it("dev - the demo workflow completes with every service under its own user", () => {
    expect(stdout).toContain(
      `NATS      nats://127.0.0.1:${port} (started here with the users of infra/nats/nats-server.conf`,
    );
    expect(stdout).toContain("each as its own NATS user");
    expect(stdout).toMatch(/completed\s+run completed/);
    expect(stdout).toContain('"greeting": "Hello, Ada Lovelace"');
    expect(stdout).toContain(`NATS_URL=nats://127.0.0.1:${port}`);
  });

  it("dev - the passwords are in the data dir, readable by their owner only", async () => {
    const file = natsUsersFile(dataDir);
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    expect(Object.keys((await readNatsPasswords(dataDir)) ?? {})).toEqual(
      Object.values(NATS_PASSWORD_VARIABLES),
    );
  });

  it("dev - a connection without credentials is refused, the submitter's from the data dir is not", async () => {
    const url = `nats://127.0.0.1:${port}`;
    await expect(connectTo(url, { maxReconnectAttempts: 0, timeout: 3_000 })).rejects.toThrow(
      /Authorization/i,
    );
    const passwords = await readNatsPasswords(dataDir);
    const submitter = await connectTo(url, {
      user: NatsUser.SUBMITTER,
      pass: passwords?.[NATS_PASSWORD_VARIABLES[NatsUser.SUBMITTER]] ?? "",
      maxReconnectAttempts: 0,
    });
    await submitter.close();
  });

  it("dev - Ctrl-C stops the services and the nats-server it started", async () => {
    const exited = once(dev, "exit");
    dev.kill("SIGINT");
    await exited;
    expect(stdout).toContain("stopped");
    expect(await acceptsConnections(port)).toBe(false);
  });
});

describe("e2e - npm start against a NATS it did not start", () => {
  it("dev - a local NATS that refuses Loom's users gets a message naming them and the passwords file", async () => {
    await using other = await startNatsWithUsers();
    const dataDir = await mkdtemp(join(tmpdir(), "loom-dev-foreign-"));
    try {
      const env: NodeJS.ProcessEnv = {
        ...process.env,
        LOOM_DATA_DIR: dataDir,
        LOOM_DEV_NATS_PORT: String(other.server.port),
      };
      delete env.NATS_URL;
      for (const variable of Object.values(NATS_PASSWORD_VARIABLES)) delete env[variable];
      const refused = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
        const child = execFile(
          process.execPath,
          [join(REPO_ROOT, "services/cli/bin.ts"), "dev", "--no-demo"],
          { cwd: REPO_ROOT, env, timeout: 30_000 },
          (_error, _stdout, stderr) => resolve({ code: child.exitCode, stderr }),
        );
      });
      expect(refused.code).toBe(1);
      expect(refused.stderr).toContain("was not started by Loom and refused its users");
      expect(refused.stderr).toContain(
        "orchestrator, acp-policy, mcp-worker, llm-agent, submitter, policy-admin",
      );
      expect(refused.stderr).toContain(natsUsersFile(dataDir));
      expect(refused.stderr).toContain("nats-server -js -c infra/nats/nats-server.conf");
    } finally {
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});

const CLI = join(REPO_ROOT, "services/cli/bin.ts");

interface Dev {
  child: ChildProcess;
  output(): string;
  /** Resolves with the output once `text` shows up (or rejects when the process exits first). */
  waitFor(text: string, timeoutMs: number): Promise<string>;
}

function startDev(env: Record<string, string>): Dev {
  const child = spawn(process.execPath, [CLI, "dev", "--no-jaeger"], {
    cwd: REPO_ROOT,
    env: { ...process.env, OTEL_TRACES_EXPORTER: "none", LOG_FORMAT: "json", LOOM_HTTP_PORT: "0", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  child.stdout?.on("data", (chunk: Buffer) => {
    output += chunk.toString("utf8");
  });
  child.stderr?.on("data", (chunk: Buffer) => {
    output += chunk.toString("utf8");
  });
  return {
    child,
    output: () => output,
    waitFor: (text, timeoutMs) =>
      new Promise((resolve, reject) => {
        const deadline = setTimeout(
          () => reject(new Error(`no "${text}" within ${timeoutMs} ms:\n${output}`)),
          timeoutMs,
        );
        const check = setInterval(() => {
          if (output.includes(text)) {
            clearInterval(check);
            clearTimeout(deadline);
            resolve(output);
          } else if (child.exitCode !== null) {
            clearInterval(check);
            clearTimeout(deadline);
            reject(new Error(`exited ${child.exitCode} before "${text}":\n${output}`));
          }
        }, 100);
      }),
  };
}

describe("e2e - npm start (loom dev)", () => {
  const started: ChildProcess[] = [];
  afterAll(() => {
    for (const child of started) if (child.exitCode === null) child.kill("SIGKILL");
  });

  it("e2e - an unreachable NATS_URL exits 1 at once, saying so, and starts nothing", async () => {
    const url = `nats://127.0.0.1:${await freePort()}`;
    const dataDir = await mkdtemp(join(tmpdir(), "loom-dev-unreachable-"));
    const dev = startDev({ NATS_URL: url, LOOM_DATA_DIR: dataDir });
    started.push(dev.child);
    const [code] = await once(dev.child, "exit");
    expect(code).toBe(1);
    expect(dev.output()).toContain(`cannot reach NATS at ${url} (NATS_URL)`);
    expect(dev.output()).toContain("Nothing was started.");
    expect(dev.output()).not.toContain("services  ");
    await rm(dataDir, { recursive: true, force: true });
  });

  it("e2e - with its own LOOM_MCP_SERVERS it starts without the demo servers, prints the A2A and MCP URLs, and stops on Ctrl-C", async () => {
    await using nats = await startNatsWithUsers();
    const dir = await mkdtemp(join(tmpdir(), "loom-dev-"));
    try {
      const servers = join(dir, "servers.yaml");
      await writeFile(
        servers,
        `servers:
  - name: clock
    transport: { type: stdio, command: node, args: ["${join(REPO_ROOT, "services/mcp-servers/time.ts")}"] }
    governance: { owner: platform-team, data_classification: public, access_level: read }
`,
      );
      const port = await freePort();
      // The data dir holds the users' passwords the NATS runs with, as `npm start` keeps them.
      const dev = startDev({
        NATS_URL: nats.server.url,
        LOOM_DATA_DIR: nats.dataDir,
        LOOM_MCP_SERVERS: servers,
        LOOM_A2A_PORT: String(port),
      });
      started.push(dev.child);
      const output = await dev.waitFor("Loom is running", 120_000);
      const edge = `http://127.0.0.1:${port}`;
      expect(output).toContain(`A2A       ${edge}/.well-known/agent-card.json`);
      expect(output).toContain(`MCP       ${edge}/mcp`);
      expect(output).toContain(`demo      skipped: LOOM_MCP_SERVERS=${servers}`);
      const card = (await (await fetch(`${edge}/.well-known/agent-card.json`)).json()) as {
        skills: unknown[];
      };
      expect(card.skills.length).toBeGreaterThan(0);
      const mcp = await fetch(`${edge}/mcp`, { method: "POST" });
      expect(mcp.status).toBe(401);

      dev.child.kill("SIGINT");
      const [code] = await once(dev.child, "exit");
      expect(code).toBe(0);
      expect(dev.output()).toContain("stopped");
      await expect(fetch(`${edge}/.well-known/agent-card.json`)).rejects.toThrow();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }, 180_000);
});
