import type { Browser } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { launchConsoleBrowser, shot, signedIn as signedInAt } from "../helpers/console-browser.ts";
import { type Loom, startLoom, tokenFor } from "../helpers/loom.ts";
import { freePort } from "../helpers/ports.ts";

const FIRST_LOAD_BUDGET_BYTES = 200 * 1024;

/**
 * The web console in a real browser (Debian's chromium, headless) against a whole stack: people
 * sign in with their tokens, start and follow runs live, approve from the inbox, and see only what
 * policy lets them see.
 */
describe("console - the web console in a browser against the whole stack", () => {
  let loom: Loom;
  let browser: Browser;
  let base: string;
  let analystRun: string;

  beforeAll(async () => {
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    loom = await startLoom({ env: { LOOM_A2A_PORT: String(port) } });
    browser = await launchConsoleBrowser();
  }, 120_000);
  afterAll(async () => {
    await browser?.close();
    await loom?.[Symbol.asyncDispose]();
  });

  const signedIn = (token: string) => signedInAt(browser, base, token);

  it("console - an analyst starts crm-enrich and watches it wait for approval live; a manager approves from the inbox; the run page completes without reload", async () => {
    const analyst = await signedIn(tokenFor("ann", "analyst"));
    await analyst.page.getByText("Start a run").click();
    await analyst.page.getByLabel("Workflow", { exact: true }).first().selectOption("crm-enrich");
    await analyst.page.getByLabel("Input (JSON)").fill('{"contactId":"c-2"}');
    await analyst.page.getByRole("button", { name: "Start", exact: true }).click();
    await analyst.page.waitForURL(/\/console\/runs\/[\w-]+$/);
    analystRun = analyst.page.url().split("/").at(-1) as string;
    const state = analyst.page.getByTestId("run-state");
    await expect.poll(() => state.textContent(), { timeout: 30_000 }).toBe("input required");
    await analyst.page.locator('[data-node="approve"][data-mark="current"]').waitFor();
    await shot(analyst.page, "run-waiting");

    const manager = await signedIn(tokenFor("max", "manager"));
    await manager.page.getByRole("link", { name: "Approvals" }).click();
    const item = manager.page.locator(`article[data-run="${analystRun}"]`);
    await item.waitFor({ timeout: 15_000 });
    await expect
      .poll(() => item.locator(".prompt").textContent())
      .toBe("Escalate Grace Hopper to the US desk?");
    await shot(manager.page, "inbox");
    await item.getByLabel("Comment (optional)").fill("fine by me");
    await item.getByRole("button", { name: "Approve" }).click();
    await item.getByRole("status").filter({ hasText: "Approved" }).waitFor();

    // The analyst's page was never reloaded: the stream moves it on.
    await expect.poll(() => state.textContent(), { timeout: 30_000 }).toBe("completed");
    await analyst.page.locator('[data-node="approve"][data-mark="past"]').waitFor();
    await expect
      .poll(() => analyst.page.getByLabel("Output", { exact: true }).textContent())
      .toContain('"escalated": true');
    await analyst.page.locator('tr[data-step="approve"]').waitFor();
    await analyst.page
      .getByTestId("waterfall")
      .waitFor({ timeout: 30_000 })
      .catch(async () => {
        // Spans reach LOOM_SPANS a few seconds after they end: ask again once.
        await analyst.page.getByRole("button", { name: "Refresh" }).click();
        await analyst.page.getByTestId("waterfall").waitFor({ timeout: 15_000 });
      });
    await shot(analyst.page, "run");
    await analyst.page.getByRole("link", { name: "Runs", exact: true }).click();
    await analyst.page.locator(`tr[data-run="${analystRun}"]`).waitFor();
    await shot(analyst.page, "runs");
    await analyst.context.close();
    await manager.context.close();
  }, 120_000);

  it("console - the runs page's first load is under 200 KB compressed", async () => {
    // A new browser (nothing cached) with a token already in the tab: what a signed-in user downloads.
    const context = await browser.newContext();
    await context.addInitScript(
      (token) => sessionStorage.setItem("loom.console.token", token),
      tokenFor("ann", "analyst"),
    );
    const page = await context.newPage();
    const sizes: Promise<number>[] = [];
    const encodings: string[] = [];
    page.on("requestfinished", (request) => {
      sizes.push(request.sizes().then((size) => size.responseBodySize + size.responseHeadersSize));
    });
    page.on("response", (response) => {
      if (/\/console\/(web|vendor)\/.+\.(ts|js)$/.test(response.url())) {
        encodings.push(response.headers()["content-encoding"] ?? "identity");
      }
    });
    await page.goto(`${base}/console`);
    await page.locator("table.runs").waitFor();
    const total = (await Promise.all(sizes)).reduce((sum, size) => sum + size, 0);
    console.log(`console first load of the runs page: ${total} bytes over ${sizes.length} requests`);
    expect(total).toBeGreaterThan(0);
    expect(total).toBeLessThan(FIRST_LOAD_BUDGET_BYTES);
    expect(encodings.length).toBeGreaterThan(5);
    expect(encodings.every((encoding) => encoding === "br")).toBe(true);
    await context.close();
  });

  it("console - an admin sees the run's graph, verifies the audit, and opens the tools and policy pages", async () => {
    const admin = await signedIn(tokenFor("root", "admin"));
    await admin.page.goto(`${base}/console/runs/${analystRun}`);
    await admin.page.locator('[data-node="summarize"][data-mark="past"]').waitFor();
    await admin.page.getByRole("link", { name: "Audit", exact: true }).click();
    await admin.page.getByRole("button", { name: "Verify the audit chains" }).click();
    await expect
      .poll(() => admin.page.getByTestId("audit-verdict").textContent(), { timeout: 30_000 })
      .toMatch(/^\s*Audit intact/);
    await admin.page.getByTestId("audit-trail").waitFor();
    await shot(admin.page, "audit");
    await admin.page.getByRole("link", { name: "Tools & servers" }).click();
    await admin.page.getByTestId("servers").getByText("crm", { exact: true }).waitFor();
    await shot(admin.page, "tools");
    await admin.page.getByRole("link", { name: "Policy" }).click();
    await admin.page.getByLabel("Tool (server.tool)").fill("time.get_time");
    await admin.page.getByRole("button", { name: "Explain" }).click();
    await expect.poll(() => admin.page.getByTestId("decision").textContent()).toBe("allow");
    expect(await admin.page.locator("tr.matched").first().textContent()).toContain("everyone-reads-time");
    await shot(admin.page, "policy");
    await admin.context.close();
  }, 90_000);

  it("console - a viewer sees its run's personal data masked", async () => {
    const viewer = await signedIn(tokenFor("vic", "viewer"));
    await viewer.page.getByText("Start a run").click();
    await viewer.page.getByLabel("Workflow", { exact: true }).first().selectOption("hello");
    await viewer.page.getByLabel("Input (JSON)").fill('{"contactId":"c-4","email":"vic@example.com"}');
    await viewer.page.getByRole("button", { name: "Start", exact: true }).click();
    await viewer.page.waitForURL(/\/console\/runs\/[\w-]+$/);
    const input = viewer.page.getByLabel("Input", { exact: true });
    await expect.poll(() => input.textContent()).toContain('"email": "[masked]"');
    expect(await viewer.page.content()).not.toContain("vic@example.com");
    await shot(viewer.page, "viewer-masked");
    await viewer.context.close();
  }, 60_000);

  it("console - another user's run is not listed and its URL answers 403", async () => {
    const other = await signedIn(tokenFor("bob", "analyst"));
    await other.page.locator("table.runs").waitFor();
    expect(await other.page.locator(`tr[data-run="${analystRun}"]`).count()).toBe(0);
    await other.page.goto(`${base}/console/runs/${analystRun}`);
    const refusal = other.page.getByRole("alert");
    await refusal.waitFor();
    expect(await refusal.getAttribute("data-status")).toBe("403");
    // Refused exactly as a run that does not exist: nothing says the run is there.
    expect(await refusal.textContent()).toContain(`RUN_NOT_FOUND: no run with id ${analystRun}`);
    await shot(other.page, "run-forbidden");
    const status = await other.page.evaluate(
      async ([runId, token]) =>
        (await fetch(`/console/api/runs/${runId}`, { headers: { Authorization: `Bearer ${token}` } })).status,
      [analystRun, tokenFor("bob", "analyst")] as const,
    );
    expect(status).toBe(403);
    await other.context.close();
  }, 60_000);

  it("console - a bad token is refused at sign-in", async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    await page.goto(`${base}/console`);
    await page.getByLabel("Bearer token").fill("not.a-valid.token");
    await page.getByRole("button", { name: "Sign in" }).click();
    const refusal = page.getByRole("alert");
    await refusal.waitFor();
    expect(await refusal.textContent()).toMatch(/token/i);
    expect(await page.getByTestId("principal").count()).toBe(0);
    expect(await page.getByText("Dev sign-in").count()).toBe(0);
    await shot(page, "sign-in-refused");
    await context.close();
  });
});
