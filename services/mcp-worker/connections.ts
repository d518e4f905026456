import type { LoggingLevel } from "@modelcontextprotocol/sdk/types.js";
import type { McpServerConfig } from "../../schemas/mcp.ts";
import type { Logger } from "../kit/index.ts";
import type { RefusedServer } from "./server-config.ts";
import { ServerPool } from "./server-pool.ts";
import { type TokenSource, tokenSourceFor } from "./token-source.ts";

export interface ConnectionOptions {
  log: Logger;
  logLevel: LoggingLevel;
  /** The value of an environment variable an `auth` block names. */
  secret: (name: string) => string | undefined;
  /** Applied to each replica's entry before it starts (tracing environment, say). */
  prepare?: (replica: McpServerConfig) => McpServerConfig;
}

/**
 * One pool of connections (replicas, versions) per configured server. A server whose `auth` cannot be honoured (on stdio, or
 * its secret missing from the environment) is refused with the reason, the others still load.
 */
export function createConnections(
  servers: McpServerConfig[],
  options: ConnectionOptions,
): { connections: Map<string, ServerPool>; refused: RefusedServer[] } {
  const connections = new Map<string, ServerPool>();
  const refused: RefusedServer[] = [];
  for (const server of servers) {
    const tokens = tokensFor(server, options);
    if (typeof tokens === "string") {
      refused.push({ name: server.name, reason: tokens });
      continue;
    }
    connections.set(
      server.name,
      new ServerPool(server, {
        log: options.log,
        connection: { tokens, logLevel: options.logLevel },
        ...(options.prepare === undefined ? {} : { prepare: options.prepare }),
      }),
    );
  }
  return { connections, refused };
}

/** The server's token source, none when it has no `auth`, or why its `auth` cannot work. */
function tokensFor(server: McpServerConfig, options: ConnectionOptions): TokenSource | undefined | string {
  const { auth } = server;
  if (auth === undefined) return undefined;
  if (server.transport.type === "stdio") {
    return "auth applies to http and websocket servers; a stdio server gets secrets through transport.env";
  }
  const variable = auth.type === "bearer" ? auth.tokenEnv : auth.clientSecretEnv;
  const secret = options.secret(variable);
  if (secret === undefined) {
    return `auth names the environment variable ${variable}, which is not set for the worker`;
  }
  return tokenSourceFor(auth, secret, { server: server.name, log: options.log });
}
