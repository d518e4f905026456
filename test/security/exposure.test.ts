import { connect } from "node:net";
import { networkInterfaces } from "node:os";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AttackClass, attack, control } from "../helpers/attack-tally.ts";
import { type Listener, listenersOf } from "../helpers/listeners.ts";
import { type Loom, startLoom } from "../helpers/loom.ts";

/** This machine's addresses other hosts reach it on (link-local IPv6 needs a scope: left out). */
function externalAddresses(): string[] {
  return Object.values(networkInterfaces())
    .flat()
    .filter((address) => address !== undefined && !address.internal && !address.address.startsWith("fe80"))
    .map((address) => (address as { address: string }).address);
}

/** Whether a TCP connection to `host:port` is refused (or cannot be made at all). */
function connectionRefused(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host, port, timeout: 2_000 });
    socket.once("connect", () => {
      socket.destroy();
      resolve(false);
    });
    socket.once("timeout", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(true));
  });
}

/**
 * What `npm start` exposes: every HTTP listener of every service (each one's /metrics, and the
 * orchestrator's A2A edge with the MCP gateway and console) binds loopback unless LOOM_HTTP_HOST
 * says otherwise, so nothing on another host reaches it; on this host it answers.
 */
describe("security - exposure: what the services listen on", () => {
  let loom: Loom;
  let listeners: Listener[];

  beforeAll(async () => {
    loom = await startLoom();
    listeners = await listenersOf(loom);
  });
  afterAll(async () => {
    await loom?.[Symbol.asyncDispose]();
  });

  it("exposure - every service's HTTP listeners refuse connections on this machine's other addresses", async () => {
    expect(listeners.map((listener) => `${listener.service} ${listener.what}`).sort()).toEqual([
      "acp-policy /metrics",
      "llm-agent /metrics",
      "mcp-worker /metrics",
      "orchestrator /metrics",
      "orchestrator A2A edge, MCP gateway and console",
    ]);
    const addresses = externalAddresses();
    for (const listener of listeners) {
      await attack(
        AttackClass.EXPOSURE,
        `another host connects to ${listener.service}'s ${listener.what} (${addresses.join(", ") || "no other address"})`,
        async () => {
          const refused = await Promise.all(
            addresses.map((address) => connectionRefused(address, listener.port)),
          );
          return listener.host === "127.0.0.1" && refused.every(Boolean);
        },
      );
    }
  });

  it("exposure - control: on loopback every listener answers", async () => {
    for (const listener of listeners) {
      await control(`${listener.service}'s ${listener.what} answers on 127.0.0.1`, async () => {
        const response = await fetch(`http://127.0.0.1:${listener.port}${listener.path}`);
        return response.status === 200;
      });
    }
  });
});
