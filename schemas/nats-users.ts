import { z } from "zod";

/** The NATS users of `infra/nats/nats-server.conf`: one per service, one for callers, one for operators. */
export const NatsUser = {
  ORCHESTRATOR: "orchestrator",
  ACP_POLICY: "acp-policy",
  MCP_WORKER: "mcp-worker",
  LLM_AGENT: "llm-agent",
  /** The `loom` CLI and applications: submit, watch and steer runs. */
  SUBMITTER: "submitter",
  /** Operators: apply policy and workflows, read and verify the audit trail. */
  POLICY_ADMIN: "policy-admin",
} as const;
export type NatsUser = (typeof NatsUser)[keyof typeof NatsUser];

/** The environment variable each user's password comes from, in nats-server and in Loom alike. */
export const NATS_PASSWORD_VARIABLES = {
  orchestrator: "LOOM_NATS_ORCHESTRATOR_PASSWORD",
  "acp-policy": "LOOM_NATS_ACP_POLICY_PASSWORD",
  "mcp-worker": "LOOM_NATS_MCP_WORKER_PASSWORD",
  "llm-agent": "LOOM_NATS_LLM_AGENT_PASSWORD",
  submitter: "LOOM_NATS_SUBMITTER_PASSWORD",
  "policy-admin": "LOOM_NATS_POLICY_ADMIN_PASSWORD",
} as const satisfies Record<NatsUser, string>;
export type NatsPasswordVariable = (typeof NATS_PASSWORD_VARIABLES)[NatsUser];

/**
 * nats-server reads a variable's value as config, so a password must read as a plain string
 * there: it starts with a letter and holds letters and digits only.
 */
export const NatsPasswordSchema = z.string().regex(/^[A-Za-z][A-Za-z0-9]{23,}$/, {
  message: "a NATS password is a letter followed by at least 23 letters or digits",
});

/** `.loom/nats-users.env`: every user's password, as `LOOM_NATS_<USER>_PASSWORD=…` lines. */
export const NatsPasswordFileSchema = z.object(
  Object.fromEntries(
    Object.values(NATS_PASSWORD_VARIABLES).map((variable) => [variable, NatsPasswordSchema]),
  ) as Record<NatsPasswordVariable, typeof NatsPasswordSchema>,
);
export type NatsPasswordFile = z.infer<typeof NatsPasswordFileSchema>;

/**
 * The inbox prefix a client of NATS user `user` connects with: `infra/nats/nats-server.conf` lets
 * each user subscribe to its own inbox only, so no user reads the replies another one gets.
 */
export function inboxPrefixOf(user: string): string {
  return `_INBOX.${user}`;
}

/**
 * Where tool tasks sent by NATS user `user` (the orchestrator's steps and MCP gateway) are
 * answered: the mcp-worker answers a forwarded task there, and may publish to no other inbox of
 * that user's, so it cannot answer the orchestrator's other requests (decisions, reads) first.
 */
export function toolTaskInboxOf(user: string): string {
  return `${inboxPrefixOf(user)}.tasks`;
}

/** Whether `subject` is under some user's tool-task inbox (`toolTaskInboxOf`), where a forwarded task may be answered. */
export function isToolTaskInbox(subject: string): boolean {
  return /^_INBOX\.[A-Za-z0-9_-]+\.tasks\.[A-Za-z0-9_.-]+$/.test(subject);
}
