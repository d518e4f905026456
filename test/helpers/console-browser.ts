import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { type Browser, type BrowserContext, chromium, type Page } from "playwright-core";
import { REPO_ROOT } from "./loom.ts";

/** Screenshots of the console's pages, for people to look at (gitignored); the docs' come from here. */
export const CONSOLE_SHOTS = join(REPO_ROOT, "test-output", "console");

/**
 * Debian's chromium, headless, as the console's browser tests drive it; the screenshots folder made.
 * `args` adds switches (`--host-resolver-rules`, to point a name at this machine).
 */
export async function launchConsoleBrowser(args: readonly string[] = []): Promise<Browser> {
  await mkdir(CONSOLE_SHOTS, { recursive: true });
  return chromium.launch({
    executablePath: "/usr/bin/chromium",
    headless: true,
    args: ["--no-sandbox", ...args],
  });
}

/** A browser context signed in with this token, on the console's first page at `base`. */
export async function signedIn(
  browser: Browser,
  base: string,
  token: string,
): Promise<{ context: BrowserContext; page: Page }> {
  const context = await browser.newContext({ viewport: { width: 1366, height: 900 } });
  const page = await context.newPage();
  page.on("pageerror", (error) => console.error(`console page error: ${error.message}`));
  await page.goto(`${base}/console`);
  await page.getByLabel("Bearer token").fill(token);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByTestId("principal").waitFor();
  return { context, page };
}

/** A full-page screenshot under test-output/console/<name>.png; returns its path. */
export async function shot(page: Page, name: string): Promise<string> {
  const path = join(CONSOLE_SHOTS, `${name}.png`);
  await page.screenshot({ path, fullPage: true });
  return path;
}
