/**
 * MCP server `conformance`: the fixture the MCP conformance suite checks (see conformance-server.ts).
 * Over stdio by default, so the mcp-worker can run it behind the gateway; `--http <port>` serves
 * Streamable HTTP on 127.0.0.1 at /mcp instead, to check the fixture alone:
 *   node services/mcp-servers/conformance.ts --http 3001
 *   conformance server --url http://localhost:3001/mcp
 */
import { randomUUID } from "node:crypto";
import type { AddressInfo } from "node:net";
import { parseArgs } from "node:util";
import { InMemoryEventStore } from "@modelcontextprotocol/sdk/examples/shared/inMemoryEventStore.js";
import { createMcpExpressApp } from "@modelcontextprotocol/sdk/server/express.js";
import { StdioServerTransport } from "@modelcontextprotocol/sdk/server/stdio.js";
import { StreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/streamableHttp.js";
import { isInitializeRequest } from "@modelcontextprotocol/sdk/types.js";
import type { Request, Response } from "express";
import { createConformanceServer } from "./conformance-server.ts";

const { values } = parseArgs({ options: { http: { type: "string" } } });

if (values.http === undefined) {
  await createConformanceServer().connect(new StdioServerTransport());
} else {
  await serveHttp(Number(values.http));
}

/** One McpServer and transport per session; the event store lets a client resume a closed stream. */
async function serveHttp(port: number): Promise<void> {
  // A localhost host answers requests whose Host header names another host with 403 (DNS rebinding).
  const app = createMcpExpressApp({ host: "127.0.0.1" });
  const sessions = new Map<string, StreamableHTTPServerTransport>();

  app.post("/mcp", async (req: Request, res: Response) => {
    const sessionId = req.header("mcp-session-id");
    let transport = sessionId === undefined ? undefined : sessions.get(sessionId);
    if (transport === undefined) {
      if (sessionId !== undefined || !isInitializeRequest(req.body)) {
        res.status(sessionId === undefined ? 400 : 404).json({
          jsonrpc: "2.0",
          error: {
            code: -32000,
            message: sessionId === undefined ? "Send initialize first" : "Unknown session",
          },
          id: null,
        });
        return;
      }
      const created = new StreamableHTTPServerTransport({
        sessionIdGenerator: () => randomUUID(),
        eventStore: new InMemoryEventStore(),
        retryInterval: 100,
        onsessioninitialized: (id) => {
          sessions.set(id, created);
        },
      });
      created.onclose = () => {
        if (created.sessionId !== undefined) sessions.delete(created.sessionId);
      };
      await createConformanceServer().connect(created);
      transport = created;
    }
    await transport.handleRequest(req, res, req.body);
  });

  const existing = async (req: Request, res: Response) => {
    const transport = sessions.get(req.header("mcp-session-id") ?? "");
    if (transport === undefined) {
      res.status(404).json({ jsonrpc: "2.0", error: { code: -32000, message: "Unknown session" }, id: null });
      return;
    }
    await transport.handleRequest(req, res);
  };
  app.get("/mcp", existing);
  app.delete("/mcp", existing);

  await new Promise<void>((resolve) => {
    const listener = app.listen(port, "127.0.0.1", () => {
      // The chosen port goes to stdout so a test can ask for port 0 and read where it landed.
      process.stdout.write(`listening on http://localhost:${(listener.address() as AddressInfo).port}/mcp\n`);
      resolve();
    });
  });
}
