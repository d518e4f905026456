import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PLACEHOLDER_UI } from "../../services/cli/dev-jaeger.ts";
import { JaegerListeners } from "../../services/cli/jaeger.ts";
import { stopProcess } from "../../services/cli/nats-server.ts";
import { eventually } from "../helpers/eventually.ts";
import { jaegerQuery, requireJaeger } from "../helpers/jaeger.ts";
import { REPO_ROOT } from "../helpers/loom.ts";
import { killOnExit, type NatsServer, startNatsServer } from "../helpers/nats-server.ts";
import { traceTree } from "../helpers/otlp-receiver.ts";

const UI = `http://localhost:${JaegerListeners.queryHttp.port}`;

async function answers(url: string): Promise<boolean> {
  try {
    await (await fetch(url)).body?.cancel();
    return true;
  } catch {
    return false;
  }
}

/**
 * `npm start` (`loom dev`) where a jaeger binary is installed: it starts Jaeger on its default ports, prints
 * its URL, the demo run's trace lands in it, and Ctrl-C stops it with the rest.
 */
describe("dev - npm start runs a local Jaeger beside NATS and the services", () => {
  let nats: NatsServer;
  let dev: ChildProcess;
  let stdout = "";
  beforeAll(async () => {
    // Found on PATH or in the Go bin folder, as `npm start` looks for it.
    requireJaeger();
    expect(await answers(UI), `something already answers on ${UI}`).toBe(false);
    nats = await startNatsServer();
    const env = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith("OTEL_")));
    dev = spawn(process.execPath, [join(REPO_ROOT, "services/cli/bin.ts"), "dev"], {
      cwd: REPO_ROOT,
      env: { ...env, NATS_URL: nats.url, LOG_FORMAT: "json" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    killOnExit(dev);
    dev.stdout?.setEncoding("utf8");
    dev.stdout?.on("data", (chunk: string) => {
      stdout += chunk;
    });
    await eventually(
      () => stdout,
      (text) => text.includes("Loom is running"),
      90_000,
    );
  }, 120_000);
  afterAll(async () => {
    if (dev !== undefined) await stopProcess(dev, "SIGKILL");
    await nats?.[Symbol.asyncDispose]();
  });

  it("dev - prints Jaeger's URL, the demo's trace reaches it, and Ctrl-C stops Jaeger too", async () => {
    expect(stdout).toContain(`Jaeger    ${UI} (started here, traces in memory)`);
    // Built from source (as CI and infra/jaeger/install.sh build it), the UI is a placeholder: said so.
    const placeholder = (await (await fetch(UI)).text()).includes(PLACEHOLDER_UI);
    expect(stdout.includes("this jaeger was built without its web UI")).toBe(placeholder);
    const traceId = /^trace ([0-9a-f]{32})$/m.exec(stdout)?.[1] ?? "";
    expect(traceId).not.toBe("");
    const tree = await eventually(
      async () => traceTree(await jaegerQuery(UI).spans(traceId), traceId),
      (text) =>
        text.includes("mcp-crm: tools/call get_contact") && text.includes("mcp-time: tools/call get_time"),
      30_000,
    );
    expect(tree.split("\n")[0]).toBe("loom-cli: loom submit hello");

    const exited = once(dev, "exit");
    dev.kill("SIGINT");
    await exited;
    expect(stdout).toContain("stopped");
    expect(await answers(UI)).toBe(false);
  });
});
