import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { REPO_ROOT } from "../helpers/loom.ts";
import { startNatsServer } from "../helpers/nats-server.ts";
import { freePort } from "../helpers/ports.ts";

const CLI = join(REPO_ROOT, "services/cli/bin.ts");

interface Dev {
  child: ChildProcess;
  output(): string;
  /** Resolves with the output once `text` shows up (or rejects when the process exits first). */
  waitFor(text: string, timeoutMs: number): Promise<string>;
}

function startDev(env: Record<string, string>): Dev {
  const child = spawn(process.execPath, [CLI, "dev"], {
    cwd: REPO_ROOT,
    env: { ...process.env, OTEL_TRACES_EXPORTER: "none", LOG_FORMAT: "json", ...env },
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
    const dev = startDev({ NATS_URL: url });
    started.push(dev.child);
    const [code] = await once(dev.child, "exit");
    expect(code).toBe(1);
    expect(dev.output()).toContain(`cannot reach NATS at ${url} (NATS_URL)`);
    expect(dev.output()).toContain("Nothing was started.");
    expect(dev.output()).not.toContain("services  ");
  });

  it("e2e - with its own LOOM_MCP_SERVERS it starts without the demo servers, prints the A2A and MCP URLs, and stops on Ctrl-C", async () => {
    await using nats = await startNatsServer();
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
      const dev = startDev({ NATS_URL: nats.url, LOOM_MCP_SERVERS: servers, LOOM_A2A_PORT: String(port) });
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
