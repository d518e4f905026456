import { mkdir, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { jetstream } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import type { Browser, BrowserContext, Page } from "playwright-core";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { TaskState, TERMINAL_STATES } from "../../schemas/a2a.ts";
import { RunCancelContract } from "../../schemas/contracts.ts";
import { ErrorCode } from "../../schemas/errors.ts";
import type { RequestedSchema } from "../../schemas/sampling.ts";
import { Headers, runCancelSubject } from "../../schemas/subjects.ts";
import { type LoomError, request } from "../../services/kit/index.ts";
import { followRun } from "../../services/kit/run-watch.ts";
import { launchConsoleBrowser, shot, signedIn as signedInAt } from "../helpers/console-browser.ts";
import { writeEverythingConfig } from "../helpers/everything-config.ts";
import { type Loom, NatsUser, startLoom, tokenFor } from "../helpers/loom.ts";
import { freePort } from "../helpers/ports.ts";

/** Analysts start and follow their runs; managers answer what runs ask, as the shipped policy has it. */
const POLICY = `
version: "test"
rules:
  - { name: analysts-start, effect: allow, roles: [analyst], actions: [workflow.start], workflows: ["*"] }
  - { name: analysts-use-everything, effect: allow, roles: [analyst], actions: [tools.call], tools: ["everything.*"] }
  - { name: owners-read-runs, effect: allow, roles: ["*"], actions: [runs.read, runs.subscribe], workflows: ["*"], when: "principal.id == resource.started_by" }
  - { name: staff-list-runs, effect: allow, roles: [analyst, manager], actions: [runs.list] }
  - { name: managers-answer, effect: allow, roles: [manager], actions: [runs.approve], workflows: ["*"] }
  - { name: owners-cancel, effect: allow, roles: [analyst], actions: [runs.cancel], workflows: ["*"], when: "principal.id == resource.started_by" }
`;

/** One step whose MCP server (server-everything) asks its user to fill a form of every field kind. */
const ELICIT = `
id: elicit-demo
steps:
  - id: form
    call: everything.trigger-elicitation-request
`;

const QUESTION = "Please provide inputs for the following fields:";

/** Every string inside a JSON value. */
function stringsIn(value: unknown): string[] {
  if (typeof value === "string") return [value];
  if (typeof value !== "object" || value === null) return [];
  return Object.values(value).flatMap(stringsIn);
}

/** The server's report ends with `Raw result: <the ElicitResult it received>`: that result, parsed. */
function receivedByServer(output: string): unknown {
  const report = stringsIn(JSON.parse(output)).find((text) => text.includes("Raw result: "));
  if (report === undefined) throw new Error(`the run's output holds no raw result: ${output}`);
  return JSON.parse(report.slice(report.indexOf("Raw result: ") + "Raw result: ".length));
}

/**
 * The console's answer to an MCP server's question (elicitation), in a real browser against the
 * whole stack with server-everything: the form is built from the server's JSON Schema, and what
 * the person submits is exactly what the server receives.
 */
const analystToken = tokenFor("ann", "analyst");

describe("console - answering an MCP server's question (elicitation) in the browser", () => {
  let loom: Loom;
  let browser: Browser;
  let base: string;
  let dir: string;
  let submitter: NatsConnection;
  /** What a test opened, ended after it whether it passed or not, so the next starts from nothing. */
  const opened: { runs: string[]; contexts: BrowserContext[] } = { runs: [], contexts: [] };

  beforeAll(async () => {
    const config = await writeEverythingConfig("loom-console-elicit-", { policy: POLICY });
    dir = config.dir;
    const workflows = join(dir, "workflows");
    await mkdir(workflows);
    await writeFile(join(workflows, "elicit.yaml"), ELICIT);
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    loom = await startLoom({
      env: { ...config.env, LOOM_WORKFLOWS_DIR: workflows, LOOM_A2A_PORT: String(port) },
      tools: ["everything.trigger-elicitation-request"],
    });
    browser = await launchConsoleBrowser();
    submitter = await loom.connectAs(NatsUser.SUBMITTER);
  }, 120_000);
  afterEach(async () => {
    await Promise.all(opened.contexts.splice(0).map((context) => context.close()));
    for (const runId of opened.runs.splice(0)) await endRun(runId);
  });
  afterAll(async () => {
    await browser?.close();
    await loom?.[Symbol.asyncDispose]();
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  const signedIn = async (token: string) => {
    const session = await signedInAt(browser, base, token);
    opened.contexts.push(session.context);
    return session;
  };

  /** Cancels a run its analyst started unless it has ended already (RUN_NOT_WAITING). */
  async function endRun(runId: string): Promise<void> {
    const refusal = await request(
      submitter,
      runCancelSubject(runId),
      RunCancelContract,
      { reason: "the test is over" },
      { timeoutMs: 15_000, headers: { [Headers.AUTHORIZATION]: `Bearer ${analystToken}` } },
    ).then(
      () => undefined,
      (error: LoomError) => error,
    );
    if (refusal !== undefined && refusal.code !== ErrorCode.RUN_NOT_WAITING) throw refusal;
  }

  /** Starts elicit-demo from the console's own form; the page is then the run's, live. */
  async function startFromConsole(page: Page): Promise<string> {
    await page.getByText("Start a run").click();
    await page.getByLabel("Workflow", { exact: true }).first().selectOption("elicit-demo");
    await page.getByLabel("Input (JSON)").fill("{}");
    await page.getByRole("button", { name: "Start", exact: true }).click();
    await page.waitForURL(/\/console\/runs\/[\w-]+$/);
    const runId = page.url().split("/").at(-1) as string;
    opened.runs.push(runId);
    return runId;
  }

  /** The schema the server asked with, read from the run's events on the bus, not from the console. */
  async function askedSchema(runId: string): Promise<RequestedSchema> {
    for await (const event of followRun(jetstream(loom.observer), runId, {
      stopAt: (state) => state === TaskState.INPUT_REQUIRED || TERMINAL_STATES.has(state),
    })) {
      const schema =
        "statusUpdate" in event ? event.statusUpdate.metadata?.elicitation?.requestedSchema : undefined;
      if (schema !== undefined) return schema;
    }
    throw new Error(`run ${runId} asked nothing`);
  }

  async function outputOf(page: Page): Promise<string> {
    const output = page.getByLabel("Output", { exact: true });
    await output.waitFor();
    return (await output.textContent()) ?? "";
  }

  it("elicitation - an analyst's run asks live; a manager fills the form built from the schema; the server receives exactly that", async () => {
    const analyst = await signedIn(analystToken);
    const runId = await startFromConsole(analyst.page);
    const state = analyst.page.getByTestId("run-state");
    await expect.poll(() => state.textContent(), { timeout: 30_000 }).toBe("input required");
    await expect.poll(() => analyst.page.getByTestId("events").textContent()).toContain(QUESTION);
    const schema = await askedSchema(runId);

    // The analyst may not answer (no runs.approve): nothing waits in the analyst's inbox.
    await analyst.page.getByRole("link", { name: "Answer in the approvals inbox" }).click();
    await analyst.page.getByText("Nothing waits for you.").waitFor();
    await analyst.page.goBack();
    await expect.poll(() => state.textContent()).toBe("input required");

    const manager = await signedIn(tokenFor("max", "manager"));
    await manager.page.getByRole("link", { name: "Approvals" }).click();
    const item = manager.page.locator(`article[data-run="${runId}"]`);
    await item.waitFor({ timeout: 15_000 });
    expect(await item.locator(".prompt").textContent()).toBe(QUESTION);
    const form = item.locator("form.schema-form");

    // Every property of the schema has its labelled control; every control has a label.
    const required = new Set(schema.required ?? []);
    for (const [name, field] of Object.entries(schema.properties)) {
      const title = `${String(field.title ?? name)}${required.has(name) ? " (required)" : ""}`;
      if (field.type === "array") {
        const group = form.getByRole("group", { name: title, exact: true });
        const items = (field.items ?? {}) as { enum?: unknown[]; anyOf?: unknown[] };
        expect(await group.getByRole("checkbox").count(), name).toBe(
          (items.enum ?? items.anyOf ?? []).length,
        );
      } else {
        expect(await form.getByLabel(title, { exact: true }).count(), name).toBe(1);
      }
    }
    const unlabelled = await form.locator("input, select, textarea").evaluateAll((controls) =>
      controls
        .filter((control) => {
          const { labels } = control as unknown as {
            labels: ArrayLike<{ textContent: string | null }> | null;
          };
          return labels === null || labels.length === 0 || (labels[0]?.textContent ?? "").trim() === "";
        })
        .map((control) => control.outerHTML),
    );
    expect(unlabelled).toEqual([]);

    // The keyboard alone for the first two fields: type the name, Tab to the checkbox, Space.
    await form.getByLabel("String (required)", { exact: true }).focus();
    await manager.page.keyboard.type("Ada Lovelace");
    await manager.page.keyboard.press("Tab");
    await manager.page.keyboard.press("Space");
    expect(await form.getByLabel("Boolean", { exact: true }).isChecked()).toBe(true);
    // What HTML can check, the browser checks before anything is sent.
    const answers: string[] = [];
    manager.page.on("request", (request) => {
      if (request.url().endsWith(`/runs/${runId}/input`)) answers.push(request.postData() ?? "");
    });
    const email = form.getByLabel("String with email format", { exact: true });
    await email.fill("not an address");
    await form.getByRole("button", { name: "Send answer" }).click();
    expect(
      await email.evaluate((input) => (input as unknown as { validationMessage: string }).validationMessage),
    ).not.toBe("");
    expect(answers).toEqual([]);
    await email.fill("ada@example.com");
    await form.getByLabel("String with uri format", { exact: true }).fill("https://example.com/ada");
    await form.getByLabel("String with date format", { exact: true }).fill("1815-12-10");
    await form.getByLabel("Integer", { exact: true }).fill("7");
    await form.getByLabel("Untitled Single Select Enum", { exact: true }).selectOption({ label: "Rachel" });
    await form
      .getByLabel("Titled Single Select Enum", { exact: true })
      .selectOption({ label: "Wonder Woman" });
    await form
      .getByLabel("Legacy Titled Single Select Enum", { exact: true })
      .selectOption({ label: "Dogs" });
    const instruments = form.getByRole("group", { name: "Untitled Multiple Select Enum" });
    for (const instrument of ["Piano", "Violin", "Drums"]) await instruments.getByLabel(instrument).check();
    await form.getByRole("group", { name: "Titled Multiple Select Enum" }).getByLabel("Salmon").check();

    // Four instruments where the schema allows three: the browser cannot tell, the orchestrator refuses.
    await form.getByRole("button", { name: "Send answer" }).click();
    const refusal = form.getByRole("alert");
    await refusal.waitFor();
    expect(await refusal.textContent()).toBe(
      "the answer to everything's question does not match its schema: data/untitledMultipleSelectEnum must NOT have more than 3 items",
    );
    await shot(manager.page, "inbox-elicitation-refused");
    await expect.poll(() => state.textContent()).toBe("input required");

    // Corrected, the answer goes; the refusal is gone from the form and the values stayed.
    await instruments.getByLabel("Drums").uncheck();
    expect(await form.getByLabel("String (required)", { exact: true }).inputValue()).toBe("Ada Lovelace");
    // test-output/console/inbox-elicitation.png is what docs/images/console-elicitation.png shows.
    await shot(manager.page, "inbox-elicitation");
    const submitted = {
      name: "Ada Lovelace",
      check: true,
      firstLine: "It was a dark and stormy night.",
      email: "ada@example.com",
      homepage: "https://example.com/ada",
      birthdate: "1815-12-10",
      integer: 7,
      number: 3.14,
      untitledSingleSelectEnum: "Rachel",
      untitledMultipleSelectEnum: ["Guitar", "Piano", "Violin"],
      titledSingleSelectEnum: "hero-3",
      titledMultipleSelectEnum: ["fish-1", "fish-2"],
      legacyTitledEnum: "pet-2",
    };
    await form.getByRole("button", { name: "Send answer" }).click();
    await expect.poll(() => answers.length).toBe(2);
    expect(JSON.parse(answers[1] ?? "")).toEqual({ stepId: "form", data: submitted });
    await item.waitFor({ state: "detached", timeout: 30_000 });

    // The analyst's page, never reloaded, follows the run to its end; the server got exactly that.
    await expect.poll(() => state.textContent(), { timeout: 30_000 }).toBe("completed");
    const output = await outputOf(analyst.page);
    expect(output).toContain("- Name: Ada Lovelace");
    expect(receivedByServer(output)).toEqual({ action: "accept", content: submitted });
    await expect.poll(() => analyst.page.getByTestId("events").textContent()).toContain("accept by max");
  }, 120_000);

  it("elicitation - a manager declines from the inbox, and the server hears decline", async () => {
    const analyst = await signedIn(analystToken);
    const runId = await startFromConsole(analyst.page);
    const state = analyst.page.getByTestId("run-state");
    await expect.poll(() => state.textContent(), { timeout: 30_000 }).toBe("input required");

    const manager = await signedIn(tokenFor("max", "manager"));
    await manager.page.getByRole("link", { name: "Approvals" }).click();
    const item = manager.page.locator(`article[data-run="${runId}"]`);
    await item.waitFor({ timeout: 15_000 });
    await item.getByRole("button", { name: "Decline" }).click();
    await item.waitFor({ state: "detached", timeout: 30_000 });

    await expect.poll(() => state.textContent(), { timeout: 30_000 }).toBe("completed");
    const output = await outputOf(analyst.page);
    expect(output).toContain("User declined to provide the requested information.");
    expect(receivedByServer(output)).toEqual({ action: "decline" });
  }, 90_000);
});
