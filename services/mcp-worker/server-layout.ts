import { ErrorCode } from "../../schemas/errors.ts";
import type { McpServerConfig } from "../../schemas/mcp.ts";
import { DEFAULT_SERVER_VERSION } from "../../schemas/mcp-resilience.ts";
import { LoomError } from "../kit/index.ts";

export interface VersionLayout {
  name: string;
  weight: number;
  /** One entry per replica: the server's entry with that replica's transport. */
  replicas: McpServerConfig[];
}

/**
 * What a server entry asks to run: its versions (one named `default` without a `versions:`
 * block), each with the transport of every replica. A version without its own transport or
 * replica count takes the server's; a list of URLs is one http replica per URL.
 */
export function serverLayout(config: McpServerConfig): VersionLayout[] {
  const versions = config.versions ?? [{ name: DEFAULT_SERVER_VERSION, weight: 1 }];
  return versions.map((version) => {
    const transport = version.transport ?? config.transport;
    const replicas = version.replicas ?? config.replicas;
    if (typeof replicas === "number") {
      return {
        name: version.name,
        weight: version.weight,
        replicas: Array.from({ length: replicas }, () => ({ ...config, transport })),
      };
    }
    if (transport.type !== "http") {
      throw new LoomError(
        ErrorCode.CONFIG_INVALID,
        `MCP server "${config.name}" (version ${version.name}): a list of replica URLs needs an http transport; give stdio a number of processes`,
      );
    }
    return {
      name: version.name,
      weight: version.weight,
      replicas: replicas.map((url) => ({ ...config, transport: { ...transport, url } })),
    };
  });
}

/** The transport as `loom servers list` shows it: no environment, headers or URL credentials. */
export function describeTransport(config: McpServerConfig): string {
  const urls = new Set<string>();
  const commands = new Set<string>();
  for (const version of serverLayout(config)) {
    for (const replica of version.replicas) {
      const { transport } = replica;
      if (transport.type === "stdio") commands.add([transport.command, ...transport.args].join(" "));
      else urls.add(withoutCredentials(transport.url));
    }
  }
  return [
    ...[...commands].map((command) => `stdio ${command}`),
    ...[...urls].map((url) => `http ${url}`),
  ].join(", ");
}

function withoutCredentials(raw: string): string {
  const url = new URL(raw);
  url.username = "";
  url.password = "";
  url.search = "";
  return url.toString();
}
