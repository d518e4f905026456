import { access } from "node:fs/promises";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { describe, expect, it } from "vitest";
import { connectTo, startNatsServer } from "../helpers/nats-server.ts";

const isRunning = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

async function waitForStatus(nc: NatsConnection, type: string): Promise<void> {
  for await (const status of nc.status()) {
    if (status.type === type) return;
  }
}

describe("nats-server test helper", () => {
  it("nats helper - starts JetStream on a free port and cleans up on dispose", async () => {
    let storeDir = "";
    let pid = 0;
    {
      await using ns = await startNatsServer();
      storeDir = ns.storeDir;
      expect(ns.url).toBe(`nats://127.0.0.1:${ns.port}`);
      expect(ns.port).toBeGreaterThan(0);
      await using nc = await connectTo(ns.url);
      const jsm = await jetstreamManager(nc);
      expect((await jsm.getAccountInfo()).streams).toBe(0);
      pid = ns.pid ?? 0;
      expect(isRunning(pid)).toBe(true);
    }
    expect(isRunning(pid)).toBe(false);
    await expect(access(storeDir)).rejects.toThrow();
  });

  it("nats helper - two servers get different ports", async () => {
    await using first = await startNatsServer();
    await using second = await startNatsServer();
    expect(first.port).not.toBe(second.port);
  });

  it("nats helper - restart after kill -9 keeps the port and the JetStream data", async () => {
    await using ns = await startNatsServer();
    {
      await using nc = await connectTo(ns.url);
      const jsm = await jetstreamManager(nc);
      await jsm.streams.add({ name: "HELPER_TEST", subjects: ["helper.test"] });
      await jetstream(nc).publish("helper.test", "kept");
    }
    const before = ns.pid;
    await ns.kill();
    expect(ns.pid).toBeUndefined();
    await expect(connectTo(ns.url, { reconnect: false })).rejects.toThrow();
    await ns.restart();
    expect(ns.pid).toBeDefined();
    expect(ns.pid).not.toBe(before);
    await using nc = await connectTo(ns.url);
    const jsm = await jetstreamManager(nc);
    const stream = await jsm.streams.info("HELPER_TEST");
    expect(stream.state.messages).toBe(1);
    const stored = await jsm.streams.getMessage("HELPER_TEST", { seq: 1 });
    expect(stored?.string()).toBe("kept");
  });

  it("nats helper - a client reconnects to the same URL across a graceful restart", async () => {
    await using ns = await startNatsServer();
    await using nc = await connectTo(ns.url, { maxReconnectAttempts: -1 });
    const reconnected = waitForStatus(nc, "reconnect");
    await ns.restart();
    await reconnected;
    await nc.flush();
    expect(nc.isClosed()).toBe(false);
  });

  it("nats helper - a server that cannot start fails with its stderr", async () => {
    await expect(startNatsServer({ args: ["-c", "/nonexistent/loom.conf"] })).rejects.toThrow(
      /exited early[\s\S]*nonexistent\/loom\.conf/,
    );
  });
});
