import { inboxPrefixOf } from "../../schemas/nats-users.ts";

/**
 * NATS URLs may carry a user and password (`nats://orchestrator:secret@host:4222`), which is how a
 * service or the CLI is given its NATS user (see `infra/nats/nats-server.conf`). The client takes
 * credentials as options, so they are lifted out of the URLs here and never logged with them.
 */
export function natsServerOptions(servers: string): {
  servers: string[];
  user?: string;
  pass?: string;
  inboxPrefix?: string;
} {
  let user: string | undefined;
  let pass: string | undefined;
  const stripped = servers.split(",").map((server) => {
    const match = /^([a-z]+:\/\/)([^:@/]+)(?::([^@/]*))?@(.*)$/i.exec(server.trim());
    if (match === null) return server.trim();
    const [, scheme, name, secret, rest] = match;
    user ??= decodeURIComponent(name ?? "");
    pass ??= secret === undefined ? undefined : decodeURIComponent(secret);
    return `${scheme}${rest}`;
  });
  return {
    servers: stripped,
    ...(user === undefined ? {} : { user, inboxPrefix: inboxPrefixOf(user) }),
    ...(pass === undefined ? {} : { pass }),
  };
}
