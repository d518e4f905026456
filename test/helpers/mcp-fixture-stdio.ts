/** The fixture MCP server over stdio, for a worker to start as a child process. */
import { StdioServerTransport } from "@modelcontextprotocol/sdk/server/stdio.js";
import { fixtureServer } from "./mcp-fixture-server.ts";

await fixtureServer().connect(new StdioServerTransport());
