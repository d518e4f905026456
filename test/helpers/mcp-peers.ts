import { readdirSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { gunzipSync } from "node:zlib";
import { DEFAULT_INHERITED_ENV_VARS } from "@modelcontextprotocol/sdk/client/stdio.js";
import { CallToolResultSchema, McpError, type ReadResourceResult } from "@modelcontextprotocol/sdk/types.js";
import { expect } from "vitest";
import { ErrorCode } from "../../schemas/errors.ts";
import { REPO_ROOT } from "./loom.ts";

/** Each third-party MCP server's entry point, run on Loom's own Node.js (`command: node`). */
export const PEER_ENTRY = {
  everything: join(REPO_ROOT, "node_modules/@modelcontextprotocol/server-everything/dist/index.js"),
  filesystem: join(REPO_ROOT, "node_modules/@modelcontextprotocol/server-filesystem/dist/index.js"),
  memory: join(REPO_ROOT, "node_modules/@modelcontextprotocol/server-memory/dist/index.js"),
} as const;
export type PeerServer = keyof typeof PEER_ENTRY;
export const PEER_SERVERS = Object.keys(PEER_ENTRY) as PeerServer[];

/** Where the peers touch the disk; made fresh for one test file. */
export interface PeerSandbox {
  /** The one directory server-filesystem may use (a real path: the server compares real paths). */
  root: string;
  /** A sibling of `root` the server must never write to. */
  outside: string;
  /** server-memory's MEMORY_FILE_PATH. */
  memoryFile: string;
  /** `root/pixel.png`, put there by the test for read_media_file. */
  png: Buffer;
  /** A variable only server-everything's config gives it, to see its environment is exactly that. */
  envMarker: { name: string; value: string };
}

/** What a step must show: its value in `$steps`, or the typed error it fails with (and why). */
export type Outcome =
  | { expect: (value: unknown) => void }
  | { fails: { code: ErrorCode; message: RegExp; why: string } };

/**
 * A tool call: its arguments and its outcome; `gateway`, where a call through the MCP gateway
 * ends otherwise than through a workflow (and the `why` of its failure says so).
 */
export type PeerCall = { with: Record<string, unknown>; gateway?: Outcome } & Outcome;

/**
 * A resource read or a prompt, and its outcome, in terms a workflow step and an MCP client both
 * ask for. A read's `uri` may instead be `{ linkFrom }`: the resource link an earlier tool returned.
 */
export type PeerRead = { id: string } & (
  | { read: { server: PeerServer; uri: string | { linkFrom: string } } }
  | { prompt: string; with?: Record<string, string> }
) &
  Outcome;

const PAYLOAD = "hello from a Loom workflow";

/** What a stdio server may find in its environment besides its config's `env`. */
const INHERITABLE_ENV = new Set([
  // The MCP SDK's minimal environment for stdio servers (HOME, PATH, USER and the like).
  ...DEFAULT_INHERITED_ENV_VARS,
  // Tracing settings the worker hands on (services/mcp-worker/server-telemetry.ts); never headers.
  "OTEL_TRACES_EXPORTER",
  "OTEL_EXPORTER_OTLP_ENDPOINT",
  "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
  "OTEL_EXPORTER_JAEGER_ENDPOINT",
  "OTEL_TRACES_SAMPLER",
  "OTEL_TRACES_SAMPLER_ARG",
  "OTEL_BSP_SCHEDULE_DELAY",
  // Node's compile cache directory, so a Node server starts on cached code (server-telemetry.ts).
  "NODE_COMPILE_CACHE",
]);

/** The text a step's value carries: itself, or the `content` of a structured result. */
function text(value: unknown): string {
  if (typeof value === "string") return value;
  const content = (value as { content?: unknown } | null)?.content;
  if (typeof content === "string") return content;
  throw new Error(`expected text, got ${JSON.stringify(value)}`);
}

/**
 * The bytes of the first blob in a value: a workflow's file part (`raw`) or an MCP client's blob
 * resource contents (`blob`).
 */
function rawBytes(value: unknown): Buffer {
  const part = (value as Array<{ raw?: unknown; blob?: unknown }>)[0];
  const base64 = part?.raw ?? part?.blob;
  if (typeof base64 !== "string") throw new Error(`expected a blob, got ${JSON.stringify(value)}`);
  return Buffer.from(base64, "base64");
}

/**
 * The resource links in a value with no text: a workflow's URL parts (`url`) or an MCP client's
 * `resource_link` content blocks (`uri`).
 */
export function linkUris(value: unknown): string[] {
  if (!Array.isArray(value)) throw new Error(`expected resource links, got ${JSON.stringify(value)}`);
  return value.flatMap((part: { url?: unknown; type?: unknown; uri?: unknown }) => {
    if (typeof part.url === "string") return [part.url];
    return part.type === "resource_link" && typeof part.uri === "string" ? [part.uri] : [];
  });
}

interface Graph {
  entities: Array<{ name: string; entityType: string; observations: string[] }>;
  relations: Array<{ from: string; to: string; relationType: string }>;
}

const graph = (value: unknown): Graph => value as Graph;

/**
 * Arguments and expected outcome for every tool the three peers are known to list, keyed
 * `<server>.<tool>`; steps run in this order, so a tool's entry may rely on earlier ones. A tool a
 * peer lists without an entry here fails the test: a new tool must be looked at, not skipped.
 */
export function peerCalls(sandbox: PeerSandbox): Record<string, PeerCall> {
  const { root } = sandbox;
  const note = join(root, "docs", "note.txt");
  const moved = join(root, "docs", "moved.txt");
  return {
    "everything.echo": {
      with: { message: PAYLOAD },
      expect: (value) => expect(value).toBe(`Echo: ${PAYLOAD}`),
    },
    "everything.get-sum": {
      with: { a: 19, b: 23 },
      expect: (value) => expect(value).toBe("The sum of 19 and 23 is 42."),
    },
    "everything.get-annotated-message": {
      with: { messageType: "error", includeImage: false },
      expect: (value) => expect(value).toBe("Error: Operation failed"),
    },
    "everything.get-env": {
      with: {},
      // A stdio server starts with what its config names, the SDK's minimal login variables and
      // the worker's tracing settings: none of Loom's own (NATS_URL, LOOM_*, exporter headers).
      expect: (value) => {
        const env = value as Record<string, string>;
        expect(env[sandbox.envMarker.name]).toBe(sandbox.envMarker.value);
        expect(
          Object.keys(env).filter((name) => !INHERITABLE_ENV.has(name) && name !== sandbox.envMarker.name),
        ).toEqual([]);
      },
    },
    "everything.get-resource-links": {
      with: { count: 2 },
      expect: (value) => expect(text(value)).toContain("Here are 2 resource links"),
    },
    "everything.get-resource-reference": {
      with: { resourceType: "Text", resourceId: 3 },
      expect: (value) => {
        expect(text(value)).toContain("Resource 3: This is a plaintext resource");
        expect(text(value)).toContain("demo://resource/dynamic/text/3");
      },
    },
    "everything.get-structured-content": {
      with: { location: "Chicago" },
      // structuredContent, checked against the tool's outputSchema, is the step's value.
      expect: (value) =>
        expect(value).toEqual({ temperature: 36, conditions: "Light rain / drizzle", humidity: 82 }),
    },
    "everything.get-tiny-image": {
      with: {},
      // `$steps` holds a result's text when it has some; the image part stays in the step's artifact.
      expect: (value) => expect(text(value)).toContain("The image above is the MCP logo."),
    },
    "everything.gzip-file-as-resource": {
      with: {
        name: "greeting.txt.gz",
        data: `data:text/plain;base64,${Buffer.from(PAYLOAD).toString("base64")}`,
        outputType: "resourceLink",
      },
      expect: (value) => expect(linkUris(value)).toEqual(["demo://resource/session/greeting.txt.gz"]),
    },
    "everything.toggle-simulated-logging": {
      with: {},
      expect: (value) => expect(text(value)).toMatch(/^Started simulated, random-leveled logging/),
    },
    "everything.toggle-subscriber-updates": {
      with: {},
      expect: (value) => expect(text(value)).toMatch(/^Started simulated resource updated notifications/),
    },
    "everything.trigger-long-running-operation": {
      with: { duration: 1, steps: 2 },
      expect: (value) =>
        expect(value).toBe("Long running operation completed. Duration: 1 seconds, Steps: 2."),
    },
    "everything.trigger-sampling-request": {
      // The server samples Loom's model: the llm agent's deterministic local model, policy permitting.
      with: { prompt: "what is loom?", maxTokens: 50 },
      expect: (value) => {
        expect(text(value)).toMatch(/^LLM sampling result: /);
        expect(text(value)).toContain('"model": "loom-local-echo"');
        expect(text(value)).toContain(
          "loom-local-echo: Resource trigger-sampling-request context: what is loom?",
        );
      },
      // Through the gateway the server samples the gateway client's own model, policy permitting.
      gateway: {
        expect: (value) => {
          expect(text(value)).toContain('"model": "peers-client-model"');
          expect(text(value)).toContain(
            "the client's model read: Resource trigger-sampling-request context: what is loom?",
          );
        },
      },
    },
    "everything.trigger-elicitation-request": {
      // The run asks for input; no one answers within LOOM_ELICITATION_TIMEOUT_MS, so Loom tells
      // the server the dialog was cancelled, and the tool says so.
      with: {},
      expect: (value) => expect(text(value)).toMatch(/^⚠️ User cancelled the elicitation dialog\./),
      // Through the gateway the server asks the gateway client's user, who answers.
      gateway: {
        expect: (value) => {
          expect(text(value)).toContain("User provided the requested information!");
          expect(text(value)).toContain("- Name: Ada Lovelace");
        },
      },
    },
    "everything.simulate-research-query": {
      // The tool runs only as an MCP task: created, polled and its result fetched by the worker.
      with: { topic: "loom" },
      expect: (value) => {
        expect(text(value)).toMatch(/^# Research Report: loom/);
        expect(text(value)).toContain("processed through 4 stages");
      },
    },

    "filesystem.create_directory": {
      with: { path: join(root, "docs") },
      expect: (value) => expect(text(value)).toBe(`Successfully created directory ${join(root, "docs")}`),
    },
    "filesystem.write_file": {
      with: { path: note, content: "alpha\nbeta\n" },
      expect: (value) => expect(text(value)).toBe(`Successfully wrote to ${note}`),
    },
    "filesystem.edit_file": {
      with: { path: note, edits: [{ oldText: "beta", newText: "gamma" }] },
      expect: (value) => expect(text(value)).toMatch(/^-beta\n\+gamma$/m),
    },
    "filesystem.read_text_file": {
      with: { path: note },
      expect: (value) => expect(text(value)).toBe("alpha\ngamma\n"),
    },
    "filesystem.read_file": {
      with: { path: note, head: 1 },
      expect: (value) => expect(text(value)).toBe("alpha"),
    },
    "filesystem.read_multiple_files": {
      with: { paths: [note, join(root, "seed.txt")] },
      expect: (value) => {
        expect(text(value)).toContain(`${note}:\nalpha\ngamma\n`);
        expect(text(value)).toContain(`${join(root, "seed.txt")}:\nseeded by the test\n`);
      },
    },
    "filesystem.read_media_file": {
      with: { path: join(root, "pixel.png") },
      expect: (value) =>
        expect(value).toEqual({
          content: [{ type: "image", mimeType: "image/png", data: sandbox.png.toString("base64") }],
        }),
    },
    "filesystem.list_directory": {
      with: { path: root },
      expect: (value) => {
        expect(text(value)).toContain("[DIR] docs");
        expect(text(value)).toContain("[FILE] seed.txt");
      },
    },
    "filesystem.list_directory_with_sizes": {
      with: { path: root, sortBy: "name" },
      expect: (value) => expect(text(value)).toMatch(/\[FILE\] seed\.txt\s+19 B/),
    },
    "filesystem.directory_tree": {
      with: { path: root, excludePatterns: ["*.png"] },
      expect: (value) => {
        const tree = JSON.parse(text(value)) as Array<{ name: string; children?: Array<{ name: string }> }>;
        expect(tree.find((entry) => entry.name === "docs")?.children).toEqual([
          { name: "note.txt", type: "file" },
        ]);
        expect(tree.map((entry) => entry.name)).not.toContain("pixel.png");
      },
    },
    "filesystem.move_file": {
      with: { source: note, destination: moved },
      expect: (value) => expect(text(value)).toBe(`Successfully moved ${note} to ${moved}`),
    },
    "filesystem.search_files": {
      with: { path: root, pattern: "**/moved.txt" },
      expect: (value) => expect(text(value)).toBe(moved),
    },
    "filesystem.get_file_info": {
      with: { path: moved },
      expect: (value) => {
        expect(text(value)).toContain("size: 12");
        expect(text(value)).toContain("isFile: true");
      },
    },
    "filesystem.list_allowed_directories": {
      with: {},
      expect: (value) => expect(text(value)).toBe(`Allowed directories:\n${root}`),
    },

    "memory.create_entities": {
      with: {
        entities: [
          { name: "Ada", entityType: "person", observations: ["wrote the first program"] },
          { name: "Analytical Engine", entityType: "machine", observations: ["designed by Babbage"] },
        ],
      },
      expect: (value) =>
        expect(graph(value).entities.map((entity) => entity.name)).toEqual(["Ada", "Analytical Engine"]),
    },
    "memory.create_relations": {
      with: { relations: [{ from: "Ada", to: "Analytical Engine", relationType: "programmed" }] },
      expect: (value) =>
        expect(graph(value).relations).toEqual([
          { from: "Ada", to: "Analytical Engine", relationType: "programmed" },
        ]),
    },
    "memory.add_observations": {
      with: { observations: [{ entityName: "Ada", contents: ["born in 1815"] }] },
      expect: (value) =>
        expect(value).toEqual({ results: [{ entityName: "Ada", addedObservations: ["born in 1815"] }] }),
    },
    "memory.search_nodes": {
      with: { query: "1815" },
      expect: (value) => {
        expect(graph(value).entities.map((entity) => entity.name)).toEqual(["Ada"]);
        expect(graph(value).relations).toHaveLength(1);
      },
    },
    "memory.open_nodes": {
      with: { names: ["Ada"] },
      expect: (value) =>
        expect(graph(value).entities).toEqual([
          { name: "Ada", entityType: "person", observations: ["wrote the first program", "born in 1815"] },
        ]),
    },
    "memory.read_graph": {
      with: {},
      expect: (value) => {
        expect(graph(value).entities).toHaveLength(2);
        expect(graph(value).relations).toEqual([
          { from: "Ada", to: "Analytical Engine", relationType: "programmed" },
        ]);
      },
    },
    "memory.delete_observations": {
      with: { deletions: [{ entityName: "Ada", observations: ["born in 1815"] }] },
      expect: (value) => expect(value).toMatchObject({ success: true }),
    },
    "memory.delete_relations": {
      with: { relations: [{ from: "Ada", to: "Analytical Engine", relationType: "programmed" }] },
      expect: (value) => expect(value).toMatchObject({ success: true }),
    },
    "memory.delete_entities": {
      with: { entityNames: ["Analytical Engine"] },
      expect: (value) => expect(value).toMatchObject({ success: true }),
    },
  };
}

/** The files server-everything serves as static resources (its package's docs folder). */
function everythingDocuments(): Array<{ name: string; text: string }> {
  const docs = join(dirname(PEER_ENTRY.everything), "docs");
  return readdirSync(docs)
    .sort()
    .map((name) => ({ name, text: readFileSync(join(docs, name), "utf8") }));
}

const firstMessageText = (value: unknown): unknown =>
  (value as { messages: Array<{ content: { text?: string } }> }).messages[0]?.content.text;

/** Resources and prompts of each peer, read after its tool calls (so they may use their results). */
export function peerReadsAndPrompts(): Record<PeerServer, PeerRead[]> {
  return {
    everything: [
      // Each of its static documents, read through Loom, is the file it serves.
      ...everythingDocuments().map(
        ({ name, text: content }, index): PeerRead => ({
          id: `read-document-${index}`,
          read: { server: "everything", uri: `demo://resource/static/document/${encodeURIComponent(name)}` },
          expect: (value: unknown) => expect(value).toBe(content),
        }),
      ),
      {
        id: "read-text-template",
        read: { server: "everything", uri: "demo://resource/dynamic/text/7" },
        expect: (value) => expect(text(value)).toMatch(/^Resource 7: This is a plaintext resource/),
      },
      {
        id: "read-blob-template",
        read: { server: "everything", uri: "demo://resource/dynamic/blob/7" },
        expect: (value) =>
          expect(rawBytes(value).toString("utf8")).toMatch(/^Resource 7: This is a base64 blob/),
      },
      {
        // The session resource gzip-file-as-resource made: the link it returned, read back and unpacked.
        id: "read-tool-made-resource",
        read: { server: "everything", uri: { linkFrom: stepIdFor("gzip-file-as-resource") } },
        expect: (value) => expect(gunzipSync(rawBytes(value)).toString("utf8")).toBe(PAYLOAD),
      },
      {
        id: "read-unknown-resource",
        read: { server: "everything", uri: "demo://resource/nowhere" },
        // The SDK answers an unknown URI with InvalidParams, which the worker types as INVALID_INPUT;
        // the gateway, where no server lists or templates the URI, refuses it the same way. Either way
        // the message is the server's, not wrapped in the SDK's `MCP error <code>:` prefixes.
        fails: {
          code: ErrorCode.INVALID_INPUT,
          message: /^(?!.*MCP error).*Resource demo:\/\/resource\/nowhere not found/,
          why: "the server has no such resource",
        },
      },
      {
        id: "prompt-simple",
        prompt: "everything.simple-prompt",
        expect: (value) => expect(firstMessageText(value)).toBe("This is a simple prompt without arguments."),
      },
      {
        id: "prompt-args",
        prompt: "everything.args-prompt",
        with: { city: "Lisbon", state: "PT" },
        expect: (value) => expect(firstMessageText(value)).toBe("What's weather in Lisbon, PT?"),
      },
      {
        id: "prompt-completable",
        prompt: "everything.completable-prompt",
        with: { department: "Engineering", name: "Alice" },
        expect: (value) =>
          expect(firstMessageText(value)).toBe("Please promote Alice to the head of the Engineering team."),
      },
      {
        id: "prompt-resource",
        prompt: "everything.resource-prompt",
        with: { resourceType: "Text", resourceId: "2" },
        expect: (value) => {
          const messages = (
            value as { messages: Array<{ content: { resource?: { uri: string; text: string } } }> }
          ).messages;
          expect(messages[1]?.content.resource).toMatchObject({
            uri: "demo://resource/dynamic/text/2",
            text: expect.stringMatching(/^Resource 2: /),
          });
        },
      },
      {
        id: "prompt-missing-argument",
        prompt: "everything.args-prompt",
        with: { state: "PT" },
        fails: {
          code: ErrorCode.INVALID_INPUT,
          message: /^everything\.args-prompt refused its arguments: (?!MCP error)/,
          why: "args-prompt requires city",
        },
      },
    ],
    filesystem: [],
    memory: [
      {
        // After the deletions: what the tools left, as the server's one resource shows it.
        id: "read-knowledge-graph",
        read: { server: "memory", uri: "memory://knowledge-graph" },
        expect: (value) =>
          expect(value).toEqual({
            entities: [{ name: "Ada", entityType: "person", observations: ["wrote the first program"] }],
            relations: [],
          }),
      },
    ],
  };
}

/** A read or prompt as a workflow step (`mcp://` and `{% %}` are the workflow's own ways to say it). */
export function workflowStepOf(entry: PeerRead): { id: string } & Record<string, unknown> {
  if ("prompt" in entry) {
    return { id: entry.id, prompt: entry.prompt, ...(entry.with === undefined ? {} : { with: entry.with }) };
  }
  const { server, uri } = entry.read;
  if (typeof uri !== "string")
    return { id: entry.id, read: { server, uri: `{% $steps.\`${uri.linkFrom}\`.url %}` } };
  const [scheme, path] = uri.split(/:\/\/(.*)/s);
  // A server whose URI scheme is its name is read with the workflow's short form.
  return { id: entry.id, read: scheme === server ? `mcp://${server}/${path}` : { server, uri } };
}

/** Tool calls that would leave server-filesystem's directory: each is refused, none writes. */
export function escapeAttempts(sandbox: PeerSandbox): Record<string, PeerCall & { call: string }> {
  const denied = (why: string) => ({
    fails: { code: ErrorCode.TOOL_ERROR, message: /Access denied - .*outside allowed directories/, why },
  });
  const outsideName = sandbox.outside.slice(sandbox.outside.lastIndexOf("/") + 1);
  return {
    "write-absolute": {
      call: "filesystem.write_file",
      with: { path: join(sandbox.outside, "absolute.txt"), content: "escaped" },
      ...denied("an absolute path outside the allowed directory"),
    },
    "write-traversal": {
      call: "filesystem.write_file",
      with: { path: `${sandbox.root}/../${outsideName}/traversal.txt`, content: "escaped" },
      ...denied("../ out of the allowed directory"),
    },
    "write-through-symlink": {
      call: "filesystem.write_file",
      with: { path: join(sandbox.root, "escape-hatch", "symlink.txt"), content: "escaped" },
      ...denied("a symlink inside the directory that points outside it"),
    },
    "move-out": {
      call: "filesystem.move_file",
      with: { source: join(sandbox.root, "seed.txt"), destination: join(sandbox.outside, "seed.txt") },
      ...denied("moving a file out of the allowed directory"),
    },
    "read-system-file": {
      call: "filesystem.read_text_file",
      with: { path: "/etc/hostname" },
      ...denied("reading a file elsewhere on the machine"),
    },
  };
}

/** A step id for a tool: the tool name made a slug. */
export function stepIdFor(tool: string): string {
  return tool.replace(/[^a-z0-9_-]/gi, "_").slice(0, 64);
}

/**
 * What an MCP client gets from the gateway, as the value a workflow step would hold in `$steps`
 * (services/orchestrator/artifact-value.ts), so one table of outcomes judges both: structured
 * content when there is some, else the text (parsed when it is JSON), else the blocks themselves;
 * a failure is `{ error }`, Loom's typed error the gateway carries beside it.
 */
export function gatewayToolValue(answer: unknown): unknown {
  const result = CallToolResultSchema.parse(answer);
  if (result.isError === true) {
    const text = result.content.map((block) => (block.type === "text" ? block.text : "")).join("\n");
    return { error: result._meta?.["io.loom/error"] ?? { message: text } };
  }
  if (result.structuredContent !== undefined) return result.structuredContent;
  return textValue(
    result.content,
    result.content.flatMap((block) => {
      if (block.type === "text") return [block.text];
      return block.type === "resource" && "text" in block.resource ? [block.resource.text] : [];
    }),
  );
}

/** A resources/read result as a workflow's `read` step holds it: see gatewayToolValue. */
export function gatewayReadValue(result: ReadResourceResult): unknown {
  return textValue(
    result.contents,
    result.contents.flatMap((contents) => ("text" in contents ? [contents.text] : [])),
  );
}

/** A JSON-RPC error the gateway answered with, as a failed step holds it: Loom's error in `data`. */
export function gatewayErrorValue(error: unknown): { error: unknown } {
  if (error instanceof McpError) return { error: error.data ?? { message: error.message } };
  throw error;
}

function textValue(parts: unknown[], texts: string[]): unknown {
  if (texts.length === 0) return parts;
  const joined = texts.join("\n");
  try {
    return JSON.parse(joined);
  } catch {
    return joined;
  }
}

/**
 * Every step goes on after a failure (its error stays in `$steps`), so one broken tool does not
 * hide the others: each step's outcome is checked on its own.
 */
// biome-ignore lint/suspicious/noThenProperty: `then` is the workflow DSL's word; this is plain data, never awaited.
export const CARRY_ON = { onError: { then: "continue" } } as const;

/**
 * Checks every step's value in a run's output (`$steps`) against its outcome, and returns one
 * line per step that did not match, so a failing test names every broken tool at once.
 */
export function mismatches(steps: Record<string, unknown>, outcomes: Map<string, Outcome>): string[] {
  const problems: string[] = [];
  for (const [stepId, outcome] of outcomes) {
    const value = steps[stepId];
    try {
      if ("fails" in outcome) {
        expect(value, "expected a typed error").toMatchObject({
          error: { code: outcome.fails.code, message: expect.stringMatching(outcome.fails.message) },
        });
      } else {
        expect((value as { error?: unknown } | null)?.error, "the step failed").toBeUndefined();
        outcome.expect(value);
      }
    } catch (error) {
      const got = JSON.stringify(value)?.slice(0, 300);
      problems.push(`${stepId}: ${error instanceof Error ? error.message : String(error)} (got ${got})`);
    }
  }
  return problems;
}
