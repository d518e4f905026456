import { Kvm } from "@nats-io/kv";
import { describe, expect, it } from "vitest";
import { ErrorCode } from "../../schemas/errors.ts";
import type { DataClassification, ToolDescriptor } from "../../schemas/mcp.ts";
import type { PolicyDecisionRequest, Principal } from "../../schemas/policy.ts";
import { factsFor } from "../../services/acp-policy/decide.ts";
import { RegistryView } from "../../services/acp-policy/registry-view.ts";
import { createLogger, JsonSchemaValidator, LoomError } from "../../services/kit/index.ts";
import { eventually } from "../helpers/eventually.ts";
import { connectTo, startNatsServer } from "../helpers/nats-server.ts";

const log = createLogger({ service: "test", level: "silent" });
const analyst: Principal = { id: "ann", roles: ["analyst"], attributes: {} };

function descriptor(name: string, classification: DataClassification): ToolDescriptor {
  return {
    server: "crm",
    name,
    inputSchema: { type: "object", properties: { id: { type: "string" } }, required: ["id"] },
    governance: { owner: "sales", data_classification: classification, access_level: "read" },
    updatedAt: new Date().toISOString(),
  };
}

const call = (tool: string): PolicyDecisionRequest => ({
  action: "tools.call",
  resource: { tool },
  arguments: { id: "c-1" },
});

/** The facts a decision on `tool` sees, or the error code it is refused with. */
async function factsOrCode(view: RegistryView, tool: string) {
  try {
    const facts = await factsFor(
      { registry: view, validator: new JsonSchemaValidator(), defaultRegion: "eu" },
      analyst,
      call(tool),
    );
    return facts.tool?.classification;
  } catch (error) {
    if (error instanceof LoomError) return error.code;
    throw error;
  }
}

/** A nats-server with empty `loom_tools` and `loom_catalog` buckets, disposed of together. */
async function registryBuckets() {
  const ns = await startNatsServer();
  const nc = await connectTo(ns.url);
  const kvm = new Kvm(nc);
  return {
    tools: await kvm.create("loom_tools"),
    catalog: await kvm.create("loom_catalog"),
    async [Symbol.asyncDispose]() {
      await nc.close();
      await ns[Symbol.asyncDispose]();
    },
  };
}

describe("acp-policy registry view over a real nats-server", () => {
  it("registry view - decisions read governance from the watched copy and follow every change", async () => {
    await using buckets = await registryBuckets();
    const { tools, catalog } = buckets;
    await tools.put("crm.get_contact", JSON.stringify(descriptor("get_contact", "internal")));
    const view = await RegistryView.open({ tools, catalog }, log);
    try {
      expect(await factsOrCode(view, "crm.get_contact")).toBe("internal");
      // A tightened classification reaches the decisions without a restart.
      await tools.put("crm.get_contact", JSON.stringify(descriptor("get_contact", "restricted")));
      await eventually(
        () => factsOrCode(view, "crm.get_contact"),
        (value) => value === "restricted",
      );
      // A retired tool is gone for the decisions too: nothing is allowed on a stale presence.
      await tools.delete("crm.get_contact");
      await eventually(
        () => factsOrCode(view, "crm.get_contact"),
        (value) => value === ErrorCode.UNKNOWN_SERVER,
      );
    } finally {
      view.close();
    }
  });

  it("registry view - a tool the copy has not seen is read from the bucket, never refused or allowed on absence", async () => {
    await using buckets = await registryBuckets();
    const { tools, catalog } = buckets;
    const view = await RegistryView.open({ tools, catalog }, log);
    // The watch stopped: the copy stays as it was at this moment, whatever is registered after.
    view.close();
    expect(await factsOrCode(view, "crm.get_contact")).toBe(ErrorCode.UNKNOWN_SERVER);
    await tools.put("crm.get_contact", JSON.stringify(descriptor("get_contact", "restricted")));
    expect(await factsOrCode(view, "crm.get_contact")).toBe("restricted");
    expect(await factsOrCode(view, "crm.delete_contact")).toBe(ErrorCode.UNKNOWN_TOOL);
    expect(await factsOrCode(view, "erp.list_orders")).toBe(ErrorCode.UNKNOWN_SERVER);
  });
});
