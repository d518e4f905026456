let serverSideLoading:
  | Promise<
      typeof import("./gateway-server.ts") &
        typeof import("@modelcontextprotocol/sdk/server/streamableHttp.js")
    >
  | undefined;

/**
 * The MCP SDK's server side, loaded with the gateway's first request rather than at start: it is
 * the largest part of the SDK, and an orchestrator that replaces a crashed one must be ready fast.
 */
export function serverSide() {
  serverSideLoading ??= Promise.all([
    import("./gateway-server.ts"),
    import("@modelcontextprotocol/sdk/server/streamableHttp.js"),
  ]).then(([gateway, http]) => ({ ...gateway, ...http }));
  return serverSideLoading;
}
