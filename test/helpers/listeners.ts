import { readFile } from "node:fs/promises";
import type { Loom } from "./loom.ts";

/** One HTTP listener of a service, as its log announces it. */
export interface Listener {
  service: string;
  what: string;
  host: string;
  port: number;
  /** A path that answers 200 to anyone, for the control. */
  path: string;
}

const LISTENER_LINES: Record<string, { what: string; path: string }> = {
  "serving metrics and health": { what: "/metrics", path: "/healthz" },
  "serving A2A over HTTP": {
    what: "A2A edge, MCP gateway and console",
    path: "/.well-known/agent-card.json",
  },
};

/** Every listener the stack's services logged. */
export async function listenersOf(loom: Loom): Promise<Listener[]> {
  const listeners: Listener[] = [];
  for (const { name, logFile } of loom.stack.services) {
    for (const line of (await readFile(logFile, "utf8")).split("\n")) {
      if (!line.startsWith("{")) continue;
      const entry = JSON.parse(line) as { msg?: string; host?: string; port?: number };
      const kind = entry.msg === undefined ? undefined : LISTENER_LINES[entry.msg];
      if (kind !== undefined && entry.port !== undefined)
        listeners.push({ service: name, host: entry.host ?? "(none logged)", port: entry.port, ...kind });
    }
  }
  return listeners;
}
