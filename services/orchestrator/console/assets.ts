import { createHash } from "node:crypto";
import { readdir, readFile } from "node:fs/promises";
import { stripTypeScriptTypes } from "node:module";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { brotliCompressSync, constants, gzipSync } from "node:zlib";
import type { Request, Response } from "express";

/** The browser code: TypeScript (erasable syntax only) served as JavaScript, and its stylesheet. */
const WEB_DIR = join(import.meta.dirname, "web");

/** The web folder's files a browser may fetch: its modules and its stylesheet, nothing else there. */
const SERVED_NAME = /^[a-z-]+\.(ts|css)$/;

/** Bare module names the browser code imports, and the files that provide them. */
const VENDOR: Record<string, string> = {
  "preact.js": fileURLToPath(import.meta.resolve("preact")),
  "hooks.js": fileURLToPath(import.meta.resolve("preact/hooks")),
  "htm.js": fileURLToPath(import.meta.resolve("htm")),
};
const IMPORT_MAP = JSON.stringify({
  imports: {
    preact: "/console/vendor/preact.js",
    "preact/hooks": "/console/vendor/hooks.js",
    htm: "/console/vendor/htm.js",
  },
});

/** One asset, ready in every encoding a browser may ask for. */
interface Asset {
  type: string;
  etag: string;
  identity: Buffer;
  gzip: Buffer;
  br: Buffer;
}

/**
 * Serves the console's single page and its modules. A `.ts` module is stripped of its types by
 * Node's own `stripTypeScriptTypes` the first time it is asked for (no build step), and every asset
 * is kept compressed with brotli and gzip. Only files of the web folder and the three vendor
 * modules are reachable: a name is looked up, never joined from the URL.
 */
export class ConsoleAssets {
  readonly #cache = new Map<string, Promise<Asset>>();
  readonly #modules: Promise<Set<string>>;

  constructor() {
    this.#modules = readdir(WEB_DIR).then((names) => new Set(names));
  }

  /** The HTML page every console URL answers with: the router in the browser picks the view. */
  async page(res: Response, req: Request): Promise<void> {
    const modules = [...(await this.#modules)].filter((name) => name.endsWith(".ts"));
    const preloads = [
      ...Object.keys(VENDOR).map((name) => `/console/vendor/${name}`),
      ...modules.map((name) => `/console/web/${name}`),
    ]
      .map((href) => `<link rel="modulepreload" href="${href}">`)
      .join("\n    ");
    const html = `<!doctype html>
<html lang="en">
  <head>
    <meta charset="utf-8">
    <meta name="viewport" content="width=device-width, initial-scale=1">
    <title>Loom console</title>
    <link rel="stylesheet" href="/console/web/console.css">
    <script type="importmap">${IMPORT_MAP}</script>
    ${preloads}
  </head>
  <body>
    <div id="app"><p class="loading">Loading the Loom console…</p></div>
    <noscript>The Loom console needs JavaScript.</noscript>
    <script type="module" src="/console/web/main.ts"></script>
  </body>
</html>
`;
    const asset = this.#cached("page", async () => ({ type: "text/html; charset=utf-8", body: html }));
    const importMapHash = createHash("sha256").update(IMPORT_MAP).digest("base64");
    res.set(
      "Content-Security-Policy",
      `default-src 'self'; script-src 'self' 'sha256-${importMapHash}'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'`,
    );
    send(req, res, await asset);
  }

  /** A module or stylesheet of the web folder; false when there is no such file. */
  async web(name: string, req: Request, res: Response): Promise<boolean> {
    if (!SERVED_NAME.test(name) || !(await this.#modules).has(name)) return false;
    const path = join(WEB_DIR, name);
    const asset = this.#cached(`web/${name}`, async () => {
      const text = await readFile(path, "utf8");
      if (name.endsWith(".css")) return { type: "text/css; charset=utf-8", body: text };
      return { type: "text/javascript; charset=utf-8", body: stripTypeScriptTypes(text) };
    });
    send(req, res, await asset);
    return true;
  }

  /** preact, preact/hooks or htm; false for any other name. */
  async vendor(name: string, req: Request, res: Response): Promise<boolean> {
    const path = VENDOR[name];
    if (path === undefined) return false;
    const asset = this.#cached(`vendor/${name}`, async () => ({
      type: "text/javascript; charset=utf-8",
      body: await readFile(path, "utf8"),
    }));
    send(req, res, await asset);
    return true;
  }

  #cached(key: string, load: () => Promise<{ type: string; body: string }>): Promise<Asset> {
    let asset = this.#cache.get(key);
    if (asset === undefined) {
      asset = load().then(({ type, body }) => {
        const identity = Buffer.from(body);
        return {
          type,
          etag: `"${createHash("sha256").update(identity).digest("base64url").slice(0, 22)}"`,
          identity,
          gzip: gzipSync(identity, { level: 9 }),
          br: brotliCompressSync(identity, { params: { [constants.BROTLI_PARAM_QUALITY]: 11 } }),
        };
      });
      asset.catch(() => this.#cache.delete(key));
      this.#cache.set(key, asset);
    }
    return asset;
  }
}

/** Sends an asset in the best encoding the client accepts; 304 when it has this version already. */
function send(req: Request, res: Response, asset: Asset): void {
  res.set({
    "Content-Type": asset.type,
    "Cache-Control": "no-cache",
    ETag: asset.etag,
    Vary: "Accept-Encoding",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
  });
  if (req.headers["if-none-match"] === asset.etag) {
    res.status(304).end();
    return;
  }
  const accepted = String(req.headers["accept-encoding"] ?? "");
  const encoding = /\bbr\b/.test(accepted) ? "br" : /\bgzip\b/.test(accepted) ? "gzip" : undefined;
  if (encoding !== undefined) res.set("Content-Encoding", encoding);
  res.status(200).send(encoding === undefined ? asset.identity : asset[encoding]);
}
