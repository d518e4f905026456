import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { afterAll, beforeAll, describe, it } from "vitest";
import { PolicyDecideContract } from "../../schemas/contracts.ts";
import { Headers, Subjects } from "../../schemas/subjects.ts";
import { request } from "../../services/kit/index.ts";
import { AttackClass, attack, control } from "../helpers/attack-tally.ts";
import { type Loom, NatsUser, startLoom } from "../helpers/loom.ts";
import { freePort } from "../helpers/ports.ts";
import { signJwt, validClaims } from "../helpers/tokens.ts";

const usAnalyst = signJwt(validClaims("sam", ["analyst"], { region: "us" }));
const euAnalyst = signJwt(validClaims("eva", ["analyst"], { region: "eu" }));
const usAdmin = signJwt(validClaims("rex", ["admin"], { region: "us" }));
const RESIDENCY = "eu-data-stays-in-eu";

/** Workflows whose steps read an EU server's resource and render its prompt, not call a tool. */
const READ_WORKFLOW = `
id: read-contact
version: 1
steps:
  - id: profile
    read: "mcp://crm/contacts/c-1"
output: "{% $steps.profile %}"
`;
const PROMPT_WORKFLOW = `
id: prompt-contact
version: 1
steps:
  - id: summary
    prompt: crm.summarize
    with: { text: "Ada Lovelace, ada@example.com", length: 5 }
output: "{% $steps.summary %}"
`;

describe("security - resource facts: residency and classification govern reads and prompts as they govern calls", () => {
  let loom: Loom;
  let dir: string;
  let mcpUrl: URL;
  const clients: Client[] = [];

  async function gateway(token: string): Promise<Client> {
    const client = new Client({ name: "resource-facts-test", version: "1.0.0" });
    await client.connect(
      new StreamableHTTPClientTransport(mcpUrl, {
        requestInit: { headers: { Authorization: `Bearer ${token}` } },
      }),
    );
    clients.push(client);
    return client;
  }

  /** Submits a workflow file and follows it: its end state and what it printed. */
  async function submit(file: string, token: string) {
    const result = await loom.cli(["submit", join(dir, file), "--watch", "--json"], {
      token,
      timeoutMs: 120_000,
    });
    return {
      ...result,
      summary: result.stdout === "" ? undefined : (JSON.parse(result.stdout) as { state: string }),
    };
  }

  const refusedWithResidency = async (call: () => Promise<unknown>) => {
    try {
      await call();
      return false;
    } catch (error) {
      return String(error).includes(RESIDENCY);
    }
  };

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "loom-facts-"));
    await writeFile(join(dir, "read.yaml"), READ_WORKFLOW);
    await writeFile(join(dir, "prompt.yaml"), PROMPT_WORKFLOW);
    const port = await freePort();
    mcpUrl = new URL(`http://127.0.0.1:${port}/mcp`);
    loom = await startLoom({
      env: { LOOM_A2A_PORT: String(port), OTEL_TRACES_EXPORTER: "none" },
      readyTimeoutMs: 120_000,
    });
  }, 240_000);
  afterAll(async () => {
    await Promise.all(clients.map((client) => client.close()));
    await loom?.[Symbol.asyncDispose]();
    await rm(dir, { recursive: true, force: true });
  });

  it("resource facts - a workflow's read: and prompt: steps on an EU server are refused to a US caller", {
    timeout: 300_000,
  }, async () => {
    await attack(
      AttackClass.RESOURCE_FACTS,
      "a US analyst reads an EU contact through a read: step",
      async () => {
        const { summary, stdout } = await submit("read.yaml", usAnalyst);
        return summary?.state === "rejected" && stdout.includes(RESIDENCY) && !stdout.includes("123-45");
      },
    );
    await attack(
      AttackClass.RESOURCE_FACTS,
      "a US analyst renders an EU prompt through a prompt: step",
      async () => {
        const { summary, stdout } = await submit("prompt.yaml", usAnalyst);
        return summary?.state === "rejected" && stdout.includes(RESIDENCY);
      },
    );
    await attack(
      AttackClass.RESOURCE_FACTS,
      "a US admin reads an EU contact through a read: step",
      async () => {
        const { summary, stdout } = await submit("read.yaml", usAdmin);
        return summary?.state === "rejected" && stdout.includes(RESIDENCY);
      },
    );
    await control("an EU analyst reads the contact and renders the prompt", async () => {
      const read = await submit("read.yaml", euAnalyst);
      const prompt = await submit("prompt.yaml", euAnalyst);
      return (
        read.summary?.state === "completed" &&
        read.stdout.includes("Ada Lovelace") &&
        prompt.summary?.state === "completed"
      );
    });
  });

  it("resource facts - the MCP gateway's resources/read, prompts/get, completion and listings", {
    timeout: 300_000,
  }, async () => {
    const us = await gateway(usAnalyst);
    const eu = await gateway(euAnalyst);
    await attack(
      AttackClass.RESOURCE_FACTS,
      "a US analyst reads an EU contact through gateway resources/read",
      () => refusedWithResidency(() => us.readResource({ uri: "crm://contacts/c-1" })),
    );
    await attack(
      AttackClass.RESOURCE_FACTS,
      "a US analyst renders an EU prompt through gateway prompts/get",
      () =>
        refusedWithResidency(() =>
          us.getPrompt({ name: "crm.summarize", arguments: { text: "Ada", length: "5" } }),
        ),
    );
    await attack(
      AttackClass.RESOURCE_FACTS,
      "a US analyst completes an EU resource template through the gateway",
      () =>
        refusedWithResidency(() =>
          us.complete({
            ref: { type: "ref/resource", uri: "crm://contacts/{id}" },
            argument: { name: "id", value: "c" },
          }),
        ),
    );
    await attack(
      AttackClass.RESOURCE_FACTS,
      "a US analyst calls an EU tool through the gateway",
      async () => {
        const result = await us.callTool({ name: "crm.get_contact", arguments: { id: "c-1" } });
        return result.isError === true && JSON.stringify(result.content).includes(RESIDENCY);
      },
    );
    await attack(
      AttackClass.RESOURCE_FACTS,
      "a US analyst's resource listing shows EU contacts",
      async () => {
        const listed = (await us.listResources()).resources.map((resource) => resource.uri);
        return !listed.some((uri) => uri.startsWith("crm://"));
      },
    );
    await attack(AttackClass.RESOURCE_FACTS, "a US analyst's prompt listing shows EU prompts", async () => {
      const listed = (await us.listPrompts()).prompts.map((prompt) => prompt.name);
      return !listed.includes("crm.summarize");
    });
    const usAdminClient = await gateway(usAdmin);
    await attack(
      AttackClass.RESOURCE_FACTS,
      "a US admin reads an EU contact through gateway resources/read",
      () => refusedWithResidency(() => usAdminClient.readResource({ uri: "crm://contacts/c-1" })),
    );
    await control("an EU analyst reads the contact, renders the prompt and lists both", async () => {
      const read = await eu.readResource({ uri: "crm://contacts/c-1" });
      const prompt = await eu.getPrompt({ name: "crm.summarize", arguments: { text: "Ada", length: "5" } });
      const resources = (await eu.listResources()).resources.map((resource) => resource.uri);
      const prompts = (await eu.listPrompts()).prompts.map((listed) => listed.name);
      return (
        JSON.stringify(read.contents).includes("Ada Lovelace") &&
        prompt.messages.length > 0 &&
        resources.includes("crm://contacts/c-1") &&
        prompts.includes("crm.summarize")
      );
    });
  });

  it("resource facts - acp-policy decides reads, prompts and sampling with the server's region", async () => {
    // Asked as the orchestrator's MCP gateway asks, on the public decision subject.
    const gateway = await loom.connectAs(NatsUser.ORCHESTRATOR);
    const decide = (action: "resources.read" | "prompts.get" | "llm.sample", tool: string, token: string) =>
      request(
        gateway,
        Subjects.POLICY_DECIDE,
        PolicyDecideContract,
        { action, resource: { tool } },
        {
          timeoutMs: 10_000,
          headers: { [Headers.AUTHORIZATION]: `Bearer ${token}` },
        },
      );
    await attack(
      AttackClass.RESOURCE_FACTS,
      "a decision on resources.read of an EU resource for a US caller",
      async () => {
        const decision = await decide("resources.read", "crm.crm://contacts/c-1", usAnalyst);
        return decision.effect === "deny" && decision.rule === RESIDENCY;
      },
    );
    await attack(
      AttackClass.RESOURCE_FACTS,
      "a decision on prompts.get of an EU prompt for a US caller",
      async () => {
        const decision = await decide("prompts.get", "crm.summarize", usAnalyst);
        return decision.effect === "deny" && decision.rule === RESIDENCY;
      },
    );
    await attack(
      AttackClass.RESOURCE_FACTS,
      "a decision on llm.sample through an EU server for a US caller",
      async () => {
        const decision = await decide("llm.sample", "crm", usAnalyst);
        return decision.effect === "deny" && decision.rule === RESIDENCY;
      },
    );
    await control("the same decisions for an EU analyst allow", async () => {
      const read = await decide("resources.read", "crm.crm://contacts/c-1", euAnalyst);
      const prompt = await decide("prompts.get", "crm.summarize", euAnalyst);
      const sample = await decide("llm.sample", "crm", euAnalyst);
      return read.effect === "allow" && prompt.effect === "allow" && sample.effect === "allow";
    });
  });
});
