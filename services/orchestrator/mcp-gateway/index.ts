export { FederatedCatalog } from "./federated-catalog.ts";
export { GatewayPolicy } from "./gateway-policy.ts";
export { type McpEndpointOptions, mcpGatewayRouter } from "./mcp-endpoint.ts";
export { issuerUrlOf, MCP_PATH, RESOURCE_METADATA_PATH } from "./resource-metadata.ts";
export { SessionStore } from "./session-store.ts";
export { SessionStreams } from "./session-streams.ts";
