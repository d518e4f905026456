/**
 * Demo MCP server `ledger`: appends entries to a ledger on disk, a tool with a visible side
 * effect. It honours Loom's idempotency key (`_meta["io.loom/idempotency-key"]`): an entry is
 * written with an exclusive create named after the key, so a repeated call, from this process or
 * another, applies the effect once. Every invocation is also logged, so tests can tell calls from
 * effects.
 */
import { createHash, randomUUID } from "node:crypto";
import { appendFile, mkdir, readdir, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { StdioServerTransport } from "@modelcontextprotocol/sdk/server/stdio.js";
import { z } from "zod";
import { IDEMPOTENCY_META_KEY } from "../../schemas/steps.ts";

const LEDGER_DIR = resolve(process.env.LEDGER_DIR ?? ".loom/ledger");
const ENTRIES_DIR = join(LEDGER_DIR, "entries");
const INVOCATIONS_FILE = join(LEDGER_DIR, "invocations.log");
await mkdir(ENTRIES_DIR, { recursive: true });

const server = new McpServer({ name: "loom-demo-ledger", version: "1.0.0" });

server.registerTool(
  "append",
  {
    title: "Append a ledger entry",
    description: "Records an amount against an account. Idempotent per Loom step.",
    inputSchema: { account: z.string(), amount: z.number(), memo: z.string().default("") },
    outputSchema: { entryId: z.string(), duplicate: z.boolean() },
    annotations: { readOnlyHint: false, idempotentHint: true, destructiveHint: false },
  },
  async ({ account, amount, memo }, extra) => {
    const key = extra._meta?.[IDEMPOTENCY_META_KEY];
    const entryId =
      typeof key === "string" ? createHash("sha256").update(key).digest("hex").slice(0, 32) : randomUUID();
    await appendFile(INVOCATIONS_FILE, `${JSON.stringify({ entryId, key, at: new Date().toISOString() })}\n`);
    let duplicate = false;
    try {
      await writeFile(
        join(ENTRIES_DIR, `${entryId}.json`),
        JSON.stringify({ entryId, key, account, amount, memo }),
        {
          flag: "wx",
        },
      );
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
      duplicate = true;
    }
    const result = { entryId, duplicate };
    return { content: [{ type: "text", text: JSON.stringify(result) }], structuredContent: result };
  },
);

server.registerTool(
  "count",
  {
    title: "Count ledger entries",
    description: "How many entries the ledger holds.",
    inputSchema: {},
    outputSchema: { entries: z.number() },
    annotations: { readOnlyHint: true },
  },
  async () => {
    const result = { entries: (await readdir(ENTRIES_DIR)).length };
    return { content: [{ type: "text", text: JSON.stringify(result) }], structuredContent: result };
  },
);

await server.connect(new StdioServerTransport());
