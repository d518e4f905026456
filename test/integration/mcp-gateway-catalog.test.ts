import { setTimeout as sleep } from "node:timers/promises";
import type { KV } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type ToolDescriptor, ToolDescriptorSchema } from "../../schemas/mcp.ts";
import { type McpCatalogEntry, McpCatalogEntrySchema } from "../../schemas/mcp-catalog.ts";
import { Buckets } from "../../schemas/subjects.ts";
import { createLogger, encodePayload, openBucket } from "../../services/kit/index.ts";
import { FederatedCatalog } from "../../services/orchestrator/mcp-gateway/index.ts";
import { connectTo, type NatsServer, startNatsServer } from "../helpers/nats-server.ts";

const log = createLogger({ service: "gateway-catalog-test", level: "silent" });
const governance = { owner: "team", data_classification: "public", access_level: "read" } as const;
const now = new Date().toISOString();

function tool(server: string, name: string): ToolDescriptor {
  return { server, name, inputSchema: { type: "object" }, governance, updatedAt: now };
}

function catalog(server: string, extra: Partial<McpCatalogEntry> = {}): McpCatalogEntry {
  return {
    server,
    governance,
    resources: [],
    resourceTemplates: [],
    prompts: [],
    updatedAt: now,
    ...extra,
  };
}

describe("mcp gateway - the federated catalog every replica reads from KV", () => {
  let ns: NatsServer;
  let nc: NatsConnection;
  let tools: KV;
  let catalogs: KV;
  beforeAll(async () => {
    ns = await startNatsServer();
    nc = await connectTo(ns.url);
    tools = await openBucket(nc, Buckets.TOOLS, { replicas: 1 });
    catalogs = await openBucket(nc, Buckets.CATALOG, { replicas: 1 });
    await tools.put(
      "crm.get_contact",
      encodePayload(ToolDescriptorSchema, tool("crm", "get_contact"), "tool"),
    );
    await tools.put("fixture.echo", encodePayload(ToolDescriptorSchema, tool("fixture", "echo"), "tool"));
    await catalogs.put(
      "crm",
      encodePayload(
        McpCatalogEntrySchema,
        catalog("crm", {
          resourceTemplates: [{ uriTemplate: "crm://contacts/{id}", name: "contact" }],
          prompts: [{ name: "summarize", arguments: [{ name: "text", required: true }] }],
        }),
        "catalog",
      ),
    );
    await catalogs.put(
      "fixture",
      encodePayload(
        McpCatalogEntrySchema,
        catalog("fixture", {
          gateway: { prefix: "" },
          resources: [{ uri: "test://static-text", name: "static", mimeType: "text/plain", size: 12 }],
        }),
        "catalog",
      ),
    );
  });
  afterAll(async () => {
    await nc?.close();
    await ns?.[Symbol.asyncDispose]();
  });

  it("catalog - names are <server>.<name>, or the server's configured prefix; unknown fields pass through", async () => {
    const view = await FederatedCatalog.open({ tools, catalog: catalogs }, log);
    try {
      expect(
        view
          .tools()
          .map((entry) => entry.name)
          .sort(),
      ).toEqual(["crm.get_contact", "echo"]);
      expect(view.findTool("echo")).toMatchObject({ server: "fixture", upstream: "echo" });
      expect(view.prompts().map((entry) => entry.item.name)).toEqual(["crm.summarize"]);
      expect(view.resources()[0]?.item).toEqual({
        uri: "test://static-text",
        name: "static",
        mimeType: "text/plain",
        size: 12,
      });
    } finally {
      view.close();
    }
  });

  it("catalog - a URI is routed to the server that listed it, whose template matches it, or its scheme", async () => {
    const view = await FederatedCatalog.open({ tools, catalog: catalogs }, log);
    try {
      expect(view.serverOfUri("test://static-text")).toBe("fixture");
      expect(view.serverOfUri("crm://contacts/c-9")).toBe("crm");
      expect(view.serverOfTemplate("crm://contacts/{id}")).toBe("crm");
      expect(view.serverOfUri("fixture://anything")).toBe("fixture");
      expect(view.serverOfUri("nobody://here")).toBeUndefined();
    } finally {
      view.close();
    }
  });

  it("catalog - a server registered later shows up without a restart", async () => {
    const view = await FederatedCatalog.open({ tools, catalog: catalogs }, log);
    try {
      await tools.put("time.get_time", encodePayload(ToolDescriptorSchema, tool("time", "get_time"), "tool"));
      const deadline = Date.now() + 5_000;
      while (view.findTool("time.get_time") === undefined && Date.now() < deadline) await sleep(20);
      expect(view.findTool("time.get_time")).toMatchObject({ server: "time", upstream: "get_time" });
    } finally {
      view.close();
    }
  });

  it("catalog - list changes are heard per list after the initial load, and a rewrite that changes nothing is not", async () => {
    const view = await FederatedCatalog.open({ tools, catalog: catalogs }, log);
    const heard: string[] = [];
    const stop = view.onListChanged((list) => heard.push(list));
    const settle = async (count: number) => {
      const deadline = Date.now() + 5_000;
      while (heard.length < count && Date.now() < deadline) await sleep(20);
      await sleep(200);
    };
    try {
      await sleep(200);
      expect(heard).toEqual([]);
      await catalogs.put(
        "crm",
        encodePayload(
          McpCatalogEntrySchema,
          catalog("crm", {
            resourceTemplates: [{ uriTemplate: "crm://contacts/{id}", name: "contact" }],
            prompts: [{ name: "summarize", arguments: [{ name: "text", required: true }] }],
          }),
          "catalog",
        ),
      );
      await catalogs.put(
        "crm",
        encodePayload(
          McpCatalogEntrySchema,
          catalog("crm", {
            resources: [{ uri: "crm://contacts/c-9", name: "c-9" }],
            resourceTemplates: [{ uriTemplate: "crm://contacts/{id}", name: "contact" }],
            prompts: [{ name: "summarize", arguments: [{ name: "text", required: true }] }],
          }),
          "catalog",
        ),
      );
      await settle(1);
      expect(heard).toEqual(["resources"]);
      await tools.put(
        "crm.list_contacts",
        encodePayload(ToolDescriptorSchema, tool("crm", "list_contacts"), "tool"),
      );
      await catalogs.delete("fixture");
      await settle(3);
      expect([...heard].sort()).toEqual(["resources", "resources", "tools"]);
    } finally {
      stop();
      view.close();
    }
  });
});
