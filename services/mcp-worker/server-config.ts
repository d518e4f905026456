import { readFile } from "node:fs/promises";
import { dirname, resolve } from "node:path";
import { parse as parseYaml } from "yaml";
import { ErrorCode } from "../../schemas/errors.ts";
import { type McpServerConfig, McpServerConfigSchema, McpServersFileSchema } from "../../schemas/mcp.ts";
import { describeIssues, LoomError } from "../kit/index.ts";
import { serverLayout } from "./server-layout.ts";

export interface RefusedServer {
  /** The entry's `name`, or its position when it has none. */
  name: string;
  reason: string;
}

export interface ServerList {
  servers: McpServerConfig[];
  refused: RefusedServer[];
}

/**
 * Reads the server list. Each entry is validated on its own: a server without governance
 * metadata (or otherwise invalid) is refused with the reason, the others still load.
 */
export async function loadServerList(file: string): Promise<ServerList> {
  let raw: unknown;
  try {
    raw = parseYaml(await readFile(file, "utf8"));
  } catch (cause) {
    throw new LoomError(ErrorCode.CONFIG_INVALID, `cannot read MCP server list ${file}: ${String(cause)}`, {
      cause,
    });
  }
  const parsedFile = McpServersFileSchema.safeParse(raw);
  if (!parsedFile.success) {
    throw new LoomError(ErrorCode.CONFIG_INVALID, `${file}: ${describeIssues(parsedFile.error.issues)}`);
  }
  const baseDir = dirname(file);
  const result: ServerList = { servers: [], refused: [] };
  parsedFile.data.servers.forEach((entry, index) => {
    const name = entryName(entry) ?? `#${index + 1}`;
    const parsed = McpServerConfigSchema.safeParse(entry);
    if (!parsed.success) {
      const missingGovernance = parsed.error.issues.some((issue) => issue.path[0] === "governance");
      const reason = missingGovernance
        ? `governance metadata is required (owner, data_classification, access_level): ${describeIssues(parsed.error.issues)}`
        : describeIssues(parsed.error.issues);
      result.refused.push({ name, reason });
      return;
    }
    if (result.servers.some((server) => server.name === parsed.data.name)) {
      result.refused.push({ name, reason: "another server already has this name" });
      return;
    }
    const layoutProblem = checkLayout(parsed.data);
    if (layoutProblem !== undefined) {
      result.refused.push({ name, reason: layoutProblem });
      return;
    }
    result.servers.push(resolvePaths(parsed.data, baseDir));
  });
  return result;
}

/** Replicas and versions that cannot run (replica URLs for a stdio server), as a reason. */
function checkLayout(server: McpServerConfig): string | undefined {
  try {
    serverLayout(server);
    return undefined;
  } catch (error) {
    return error instanceof Error ? error.message : String(error);
  }
}

function entryName(entry: unknown): string | undefined {
  if (typeof entry === "object" && entry !== null && "name" in entry && typeof entry.name === "string")
    return entry.name;
  return undefined;
}

/** Relative paths in a stdio entry are relative to the config file, not to the worker's cwd. */
function resolvePaths(server: McpServerConfig, baseDir: string): McpServerConfig {
  const versions = server.versions?.map((version) =>
    version.transport === undefined
      ? version
      : { ...version, transport: resolveTransportPaths(version.transport, baseDir) },
  );
  return {
    ...server,
    transport: resolveTransportPaths(server.transport, baseDir),
    ...(versions === undefined ? {} : { versions }),
  };
}

function resolveTransportPaths(
  transport: McpServerConfig["transport"],
  baseDir: string,
): McpServerConfig["transport"] {
  if (transport.type !== "stdio") return transport;
  return {
    ...transport,
    args: transport.args.map((arg) =>
      arg.startsWith("./") || arg.startsWith("../") ? resolve(baseDir, arg) : arg,
    ),
    cwd: resolve(baseDir, transport.cwd ?? "."),
  };
}
