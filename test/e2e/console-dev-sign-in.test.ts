import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DEV_ISSUER } from "../../services/kit/dev-issuer.ts";
import { type Loom, startLoom } from "../helpers/loom.ts";
import { freePort } from "../helpers/ports.ts";

/**
 * The console's dev sign-in, on a stack in dev mode as `npm start` runs it: no identity provider,
 * acp-policy trusting the dev signing key in the data folder, which the console signs with too.
 */
describe("console - dev sign-in on a stack in dev mode", () => {
  let loom: Loom;
  let base: string;
  let dataDir: string;

  beforeAll(async () => {
    dataDir = await mkdtemp(join(tmpdir(), "loom-console-dev-"));
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    loom = await startLoom({
      env: {
        LOOM_A2A_PORT: String(port),
        LOOM_AUTH_PUBLIC_KEYS: "",
        LOOM_AUTH_ISSUER: DEV_ISSUER,
        LOOM_DATA_DIR: dataDir,
      },
    });
  }, 120_000);
  afterAll(async () => {
    await loom?.[Symbol.asyncDispose]();
    await rm(dataDir, { recursive: true, force: true });
  });

  it("console - signs in as the subject and role chosen, with a token acp-policy accepts", async () => {
    const browser = await chromium.launch({
      executablePath: "/usr/bin/chromium",
      headless: true,
      args: ["--no-sandbox"],
    });
    try {
      const page = await browser.newPage();
      await page.goto(`${base}/console`);
      await page.getByLabel("Subject").fill("dee");
      await page.getByLabel("Role").selectOption("manager");
      await page.getByRole("button", { name: "Sign in as dee" }).click();
      await page.getByTestId("principal").waitFor();
      expect(await page.getByTestId("principal").textContent()).toBe("dee");
      expect(await page.locator(".who .roles").textContent()).toBe("manager");
      await page.getByRole("link", { name: "Approvals" }).click();
      await page.getByText("Nothing waits for you.").waitFor();
    } finally {
      await browser.close();
    }
  }, 60_000);

  it("console - a dev sign-in asking for a malformed subject is refused with a clear error", async () => {
    const response = await fetch(`${base}/console/api/dev-sign-in`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ subject: "no spaces allowed", roles: [] }),
    });
    expect(response.status).toBe(400);
    const body = (await response.json()) as { error: { code: string; message: string } };
    expect(body.error.code).toBe("INVALID_INPUT");
    expect(body.error.message).toContain("subject");
  });
});
