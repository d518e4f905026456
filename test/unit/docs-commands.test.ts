import { existsSync, readdirSync, readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { describe, expect, it } from "vitest";

const REPO_ROOT = resolve(import.meta.dirname, "../..");
const DOCS = ["README.md", ...readdirSync(join(REPO_ROOT, "docs")).map((name) => `docs/${name}`)].filter(
  (path) => path.endsWith(".md"),
);
const SCRIPTS = new Set(
  Object.keys(
    (JSON.parse(readFileSync(join(REPO_ROOT, "package.json"), "utf8")) as { scripts: object }).scripts,
  ),
);
const BINS = new Set([...readdirSync(join(REPO_ROOT, "node_modules/.bin")), "loom"]);
/** Top-level folders of the repository: a word starting with one of them is a path that must exist. */
const REPO_DIRS = ["docs", "infra", "schemas", "scripts", "services", "test", "workflows"];

interface Command {
  doc: string;
  line: string;
  /** Folder the command runs in (a preceding `cd` in the same line moves it). */
  cwd: string;
}

/** Every command line in the ```sh code blocks of a document, comments and prompts stripped. */
function shellCommands(doc: string): Command[] {
  const commands: Command[] = [];
  const blocks = readFileSync(join(REPO_ROOT, doc), "utf8").matchAll(/```(?:sh|bash|shell)\n([\s\S]*?)```/g);
  for (const [, body = ""] of blocks) {
    const joined = body.replace(/\\\n\s*/g, " ");
    for (const raw of joined.split("\n")) {
      const line = raw
        .replace(/^\$ /, "")
        .replace(/\s+#.*$/, "")
        .trim();
      if (line !== "" && !line.startsWith("#")) commands.push({ doc, line, cwd: REPO_ROOT });
    }
  }
  return commands;
}

/** The problems of one command: scripts, binaries and repository paths it names that do not exist. */
function problems(command: Command): string[] {
  const found: string[] = [];
  let cwd = command.cwd;
  for (const part of command.line.split(/\s*(?:&&|\|\||;|\|)\s*|\$\(|\)/)) {
    const words = part.trim().split(/\s+/);
    const [first, second, third] = words;
    if (first === "cd" && second !== undefined) cwd = resolve(cwd, second);
    if (first === "node")
      found.push(`bare \`node\` may be the machine's older Node: use npm run or npx node`);
    if (first === "npm" && second === "run" && third !== undefined && !SCRIPTS.has(third)) {
      found.push(`npm run ${third}: no such script in package.json`);
    }
    if (first === "npx") {
      const bin = words.slice(1).find((word) => !word.startsWith("-"));
      if (bin !== undefined && !BINS.has(bin)) found.push(`npx ${bin}: not installed with the repo`);
    }
    for (const word of words) {
      const path = word.replace(/^['"]|['"]$/g, "");
      if (REPO_DIRS.some((dir) => path.startsWith(`${dir}/`)) && !existsSync(resolve(cwd, path))) {
        found.push(`${path}: no such file`);
      }
    }
  }
  return found.map((problem) => `${command.doc}: \`${command.line}\`: ${problem}`);
}

describe("docs - commands", () => {
  const commands = DOCS.flatMap(shellCommands);

  it("docs - the README and docs show shell commands to check", () => {
    expect(commands.length).toBeGreaterThan(20);
    expect(commands.map((command) => command.line)).toContain("npm test");
  });

  it("docs - every command names an existing npm script, installed binary and repository file", () => {
    expect(commands.flatMap(problems)).toEqual([]);
  });

  it("docs - the checks catch a missing script, a bare node, an unknown binary and a missing file", () => {
    const bad = (line: string) => problems({ doc: "x.md", line, cwd: REPO_ROOT });
    expect(bad("npm run no-such-script")).toHaveLength(1);
    expect(bad("node services/mcp-servers/conformance.ts --http 3001 &")).toHaveLength(1);
    expect(bad("npx no-such-binary --flag")).toHaveLength(1);
    expect(bad("npx loom policy test infra/policies/tests/missing.yaml")).toHaveLength(1);
    expect(bad("cd test && npx mcp-inspector-cli --cli x")).toEqual([]);
  });

  it("docs - every relative link points at a file that exists", () => {
    const broken = DOCS.flatMap((doc) =>
      [...readFileSync(join(REPO_ROOT, doc), "utf8").matchAll(/\]\(([^)#:\s]+)(?:#[^)]*)?\)/g)]
        .map(([, target = ""]) => target)
        .filter((target) => !existsSync(resolve(REPO_ROOT, dirname(doc), target)))
        .map((target) => `${doc}: ${target}`),
    );
    expect(broken).toEqual([]);
  });
});
