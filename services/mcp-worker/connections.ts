import type { LoggingLevel } from "@modelcontextprotocol/sdk/types.js";
import type { McpServerConfig } from "../../schemas/mcp.ts";
import type { Logger } from "../kit/index.ts";
import { McpConnection } from "./mcp-connection.ts";
import type { RefusedServer } from "./server-config.ts";
import { type TokenSource, tokenSourceFor } from "./token-source.ts";

export interface ConnectionOptions {
  log: Logger;
  logLevel: LoggingLevel;
  /** The value of an environment variable an `auth` block names. */
  secret: (name: string) => string | undefined;
}

/**
 * One connection per configured server. A server whose `auth` cannot be honoured (on stdio, or
 * its secret missing from the environment) is refused with the reason, the others still load.
 */
export function createConnections(
  servers: McpServerConfig[],
  options: ConnectionOptions,
): { connections: Map<string, McpConnection>; refused: RefusedServer[] } {
  const connections = new Map<string, McpConnection>();
  const refused: RefusedServer[] = [];
  for (const server of servers) {
    const tokens = tokensFor(server, options);
    if (typeof tokens === "string") {
      refused.push({ name: server.name, reason: tokens });
      continue;
    }
    connections.set(
      server.name,
      new McpConnection(server, options.log, { tokens, logLevel: options.logLevel }),
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
