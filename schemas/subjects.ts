/** Every NATS subject, stream, consumer and KV bucket Loom uses. No other file spells one out. */

export const Subjects = {
  /** JetStream: durable, deduplicated run submissions. */
  RUNS_SUBMIT: "loom.v1.runs.submit",
  /**
   * JetStream (same stream): a child run a `delegate` step starts, submitted by the orchestrator
   * with the parent's run token, which only the orchestrator may publish.
   */
  RUNS_DELEGATED: "loom.v1.runs.delegated",
  /** JetStream: every run's status and artifact events (wildcard over run ids). */
  RUN_EVENTS_ALL: "loom.v1.runs.*.events",
  /** Request/reply: human input and cancellation of any run, served by every orchestrator. */
  RUN_INPUT_ALL: "loom.v1.runs.*.input",
  RUN_CANCEL_ALL: "loom.v1.runs.*.cancel",
  /**
   * Request/reply: cancel a delegated child run because its delegating step was canceled, decided
   * with the child's own run token; only the orchestrator's NATS user may publish here.
   */
  RUN_CANCEL_DELEGATED_ALL: "loom.v1.runs.*.cancel.delegated",
  /** Request/reply: an MCP server asks a run's user for input (elicitation), served by every orchestrator. */
  RUN_ELICIT_ALL: "loom.v1.runs.*.elicit",
  RUN_ELICIT_ANSWER_ALL: "loom.v1.runs.*.elicit.answer",
  /**
   * Request/reply: read one run, list runs, follow a run's events (long poll), each authorised by
   * acp-policy for the caller and masked for it; served by the orchestrators in a queue group.
   */
  RUNS_GET: "loom.v1.runs.get",
  RUNS_LIST: "loom.v1.runs.list",
  RUNS_WATCH: "loom.v1.runs.watch",
  /**
   * Request/reply: start a failed or canceled run again as a new run (`loom runs rerun`), served by
   * the orchestrators in a queue group; the new run goes through `loom.v1.runs.submit` like any other.
   */
  RUNS_RERUN: "loom.v1.runs.rerun",
  /** Request/reply: read or forget a context's memory, authorised like run reads. */
  MEMORY_GET: "loom.v1.memory.get",
  MEMORY_CLEAR: "loom.v1.memory.clear",
  /** Request/reply: register a workflow version; render a workflow as a diagram. */
  WORKFLOWS_APPLY: "loom.v1.workflows.apply",
  WORKFLOWS_GRAPH: "loom.v1.workflows.graph",
  /** Request/reply: the registered workflows; one registered definition. */
  WORKFLOWS_LIST: "loom.v1.workflows.list",
  WORKFLOWS_SHOW: "loom.v1.workflows.show",
  /** Request/reply: policy decisions, served by acp-policy in a queue group. */
  POLICY_DECIDE: "loom.v1.policy.decide",
  /**
   * Request/reply: decisions for a run's own operations, presenting its run token. Only the
   * orchestrator's NATS user may publish here, and only here is a run token accepted.
   */
  POLICY_DECIDE_RUN: "loom.v1.policy.decide.run",
  /**
   * Request/reply, answered by the mcp-worker: a tool task's intent (the decision to ask for and
   * the A2A task). acp-policy decides with the caller's token and, on allow, forwards the task with
   * its grant to the worker, which replies to the asker; a refusal is answered by acp-policy. Only
   * the orchestrator's NATS user (the MCP gateway) may publish here.
   */
  POLICY_TASKS: "loom.v1.policy.tasks",
  /** As POLICY_TASKS for a run's own steps, decided with its run token (see POLICY_DECIDE_RUN). */
  POLICY_TASKS_RUN: "loom.v1.policy.tasks.run",
  /** JetStream: audit records of every service (wildcard over service names). */
  AUDIT_ALL: "loom.v1.audit.>",
  /** Core NATS: anomaly alerts from acp-policy (a tool never called before, a burst). */
  ALERTS: "loom.v1.alerts",
  /** Request/reply: a decision with the reasoning of every rule, for `loom policy explain`. */
  POLICY_EXPLAIN: "loom.v1.policy.explain",
  /** Request/reply: verify a bearer token and name its principal (the MCP gateway's clients). */
  POLICY_AUTHENTICATE: "loom.v1.policy.authenticate",
  /**
   * Request/reply: every mask the active policy can require (the union of its rules' obligations),
   * for what the orchestrator renders from masked data. Only the orchestrator's NATS user may ask.
   */
  POLICY_MASKS: "loom.v1.policy.masks",
  /**
   * Request/reply, dev mode only: a client-credentials token, and the public keys that verify it,
   * from acp-policy's development issuer (the MCP gateway's OAuth endpoints). Outside dev mode
   * acp-policy refuses both with DEV_MODE_ONLY. Only the orchestrator's NATS user may ask.
   */
  POLICY_DEV_TOKEN: "loom.v1.policy.dev.token",
  POLICY_DEV_JWKS: "loom.v1.policy.dev.jwks",
  /** Request/reply: which of a list of operations may the caller perform (a dry run for listings). */
  POLICY_PERMITTED: "loom.v1.policy.permitted",
  /** JetStream: the worker's record of every MCP call (wildcard over servers and runs). */
  TOOL_CALLS_ALL: "loom.v1.toolcalls.>",
  /** JetStream: feedback verdicts on steps (wildcard over run ids). */
  FEEDBACK_ALL: "loom.v1.feedback.>",
  /** Core NATS: every task's notifications (see taskNotificationsSubject), one subscription per orchestrator. */
  TASK_NOTIFICATIONS_ALL: "loom.v1.tasks.*.notifications",
  /** Request/reply: a feedback verdict on a run's step, served by the orchestrators. */
  RUN_FEEDBACK_ALL: "loom.v1.runs.*.feedback",
  /** Request/reply: calls, errors, latency, cache and feedback per tool and server version. */
  TOOLS_STATS: "loom.v1.tools.stats",
  /** Request/reply: every registered tool with its server's health, served by the orchestrators. */
  TOOLS_LIST: "loom.v1.tools.list",
  /** Request/reply: every MCP server the workers run, with its health, served by the orchestrators. */
  SERVERS_LIST: "loom.v1.servers.list",
} as const;
export type Subject = (typeof Subjects)[keyof typeof Subjects];

/**
 * Core NATS: progress and log notifications an MCP server sends while it works on one A2A task
 * (published by the worker; the orchestrator relays them as run events, the MCP gateway to its
 * client).
 */
export function taskNotificationsSubject(taskId: string): string {
  return `loom.v1.tasks.${taskId}.notifications`;
}

/**
 * Request/reply: a server's sampling or elicitation request during a gateway tool call (A2A task
 * `taskId`), sent by the worker to the gateway replica running the call, which asks its client.
 */
export function mcpTaskServerRequestsSubject(taskId: string): string {
  return `loom.v1.mcp.tasks.${taskId}.server-requests`;
}

/**
 * Core NATS: a gateway client's answer (a JSON-RPC response) to a request the gateway sent it in
 * session `sessionId` under id `requestId`; it may arrive at any replica, and goes to the one waiting.
 */
export function mcpClientResponseSubject(sessionId: string, requestId: string): string {
  return `loom.v1.mcp.sessions.${sessionId}.responses.${requestId}`;
}

/**
 * Where the record of one MCP call goes: `loom.v1.toolcalls.<server>.<runId>` for a run's step,
 * `loom.v1.toolcalls.<server>` for a call outside any run, so one run's records can be read alone.
 */
export function toolCallsSubject(server: string, runId?: string): string {
  return runId === undefined ? `loom.v1.toolcalls.${server}` : `loom.v1.toolcalls.${server}.${runId}`;
}

/** Every server's call records of one run. */
export function runToolCallsFilter(runId: string): string {
  return `loom.v1.toolcalls.*.${runId}`;
}

/** Where feedback verdicts on one run's steps are appended. */
export function feedbackSubject(runId: string): string {
  return `loom.v1.feedback.${runId}`;
}

/** Request/reply: a feedback verdict on one of a run's steps. */
export function runFeedbackSubject(runId: string): string {
  return `loom.v1.runs.${runId}.feedback`;
}

/**
 * Core NATS: an MCP gateway client cancelled one of its requests (`notifications/cancelled`). The
 * notification may reach another replica than the request did: every replica hears it, and the
 * one running the request stops it.
 */
export function mcpSessionCancelSubject(sessionId: string): string {
  return `loom.v1.mcp.sessions.${sessionId}.cancel`;
}

/**
 * Core NATS: an MCP server said one of its resources changed (`notifications/resources/updated`),
 * published by the worker holding the subscription; every gateway replica tells its sessions
 * subscribed to that URI over their `GET /mcp` streams.
 */
export function resourceUpdatedSubject(server: string): string {
  return `loom.v1.mcp.servers.${server}.resources.updated`;
}

/** Every server's resource updates (what each gateway replica listens to). */
export const RESOURCE_UPDATES_ALL = "loom.v1.mcp.servers.*.resources.updated";

/** Subject that carries one run's A2A status and artifact events. */
export function runEventsSubject(runId: string): string {
  return `loom.v1.runs.${runId}.events`;
}

/** The run id in any `loom.v1.runs.<runId>.…` subject. */
export function runIdOfSubject(subject: string): string {
  return subject.split(".")[3] ?? "";
}

/** Request/reply subject where an agent (for example `mcp-worker`) takes A2A tasks. */
export function agentTasksSubject(agent: string): string {
  return `loom.v1.agents.${agent}.tasks`;
}

/** Broadcast to an agent's replicas: abandon the named task (the one holding it stops it). */
export function agentCancelSubject(agent: string): string {
  return `loom.v1.agents.${agent}.cancel`;
}

/** Request/reply: human input for a run waiting in input-required (an approval). */
export function runInputSubject(runId: string): string {
  return `loom.v1.runs.${runId}.input`;
}

/**
 * Request/reply: the worker asks for input on behalf of an MCP server (`elicitation/create`) during
 * one of the run's tool calls; the reply is the answer someone gives with `loom runs input`.
 */
export function runElicitSubject(runId: string): string {
  return `loom.v1.runs.${runId}.elicit`;
}

/**
 * Request/reply among orchestrators: an answer to an elicitation, forwarded to the replica driving
 * the run (every replica hears it; the driver applies it and replies).
 */
export function runElicitAnswerSubject(runId: string): string {
  return `loom.v1.runs.${runId}.elicit.answer`;
}

/** Request/reply: cancel a run. */
export function runCancelSubject(runId: string): string {
  return `loom.v1.runs.${runId}.cancel`;
}

/** Where the orchestrator cancels a delegated child run whose delegating step was canceled. */
export function runDelegatedCancelSubject(runId: string): string {
  return `loom.v1.runs.${runId}.cancel.delegated`;
}

/** The service name the mcp-worker audits under: its execution records are its tool calls. */
export const MCP_WORKER_SERVICE = "mcp-worker";

/** Subject one writer (a process) of a service appends its audit records to. */
export function auditSubject(service: string, writer: string): string {
  return `loom.v1.audit.${service}.${writer}`;
}

/** Subject a finished span of trace `traceId` is published on, for `loom runs trace`. */
export function spansSubject(traceId: string): string {
  return `loom.v1.spans.${traceId}`;
}

/** Every trace's finished spans (wildcard over trace ids). */
export const SPANS_ALL = "loom.v1.spans.*";

export const Streams = {
  RUNS: "LOOM_RUNS",
  EVENTS: "LOOM_EVENTS",
  AUDIT: "LOOM_AUDIT",
  SPANS: "LOOM_SPANS",
  /** One record per MCP call (tool, server version, outcome, latency) and per feedback verdict. */
  TOOL_CALLS: "LOOM_TOOL_CALLS",
} as const;
export type Stream = (typeof Streams)[keyof typeof Streams];

export const Buckets = {
  RUNS: "loom_runs",
  TOOLS: "loom_tools",
  /** The active policy bundle (key `active`), watched by every acp-policy replica. */
  POLICY: "loom_policy",
  /** acp-policy replicas' public grant-signing keys (JWK), by key id. */
  GRANT_KEYS: "loom_grant_keys",
  STEPS: "loom_steps",
  WORKFLOWS: "loom_workflows",
  MEMORY: "loom_memory",
  RESULTS: "loom_results",
  PUSH: "loom_push",
  /** Resources, resource templates and prompts of every MCP server, next to the tools in loom_tools. */
  CATALOG: "loom_catalog",
  /** Health of every MCP server (and replica and version) as each worker sees it. */
  SERVERS: "loom_servers",
  /** Sessions of the MCP gateway, so that any gateway replica serves any session. */
  MCP_SESSIONS: "loom_mcp_sessions",
  /** Audit writers' public keys, `<service>.<writer>`; each service may write only its own. */
  AUDIT_KEYS: "loom_audit_keys",
  /** Grants already acted on, by grant id (jti): a grant authorises one execution. */
  GRANT_USES: "loom_grant_uses",
  /** Run tokens by run id: the orchestrator's NATS user alone may read or write them. */
  RUN_TOKENS: "loom_run_tokens",
} as const;
export type Bucket = (typeof Buckets)[keyof typeof Buckets];

/** The JetStream stream that holds a KV bucket (the KV client's convention). */
export function bucketStream(bucket: Bucket): string {
  return `KV_${bucket}`;
}

/** The subject a KV bucket's key is stored on: `$KV.<bucket>.<key>`. */
export function bucketKeySubject(bucket: Bucket, key: string): string {
  return `$KV.${bucket}.${key}`;
}

/** The subjects all of a KV bucket's keys are stored on. */
export function bucketSubjects(bucket: Bucket): string {
  return bucketKeySubject(bucket, ">");
}

/** Durable consumer names and queue groups. */
export const Consumers = {
  /** Delivers run events to the webhooks A2A clients registered, once per event across replicas. */
  A2A_PUSH: "a2a-push",
  ORCHESTRATOR_SUBMISSIONS: "orchestrator-submissions",
} as const;

export const QueueGroups = {
  POLICY: "acp-policy",
} as const;

/** The agent name the MCP worker serves A2A tasks under. */
export const MCP_WORKER_AGENT = "mcp-worker";

/** The agent that answers MCP sampling requests (`sampling/createMessage`) with a language model. */
export const LLM_AGENT = "llm";

/** NATS headers Loom reads or writes besides the W3C trace context ones. */
export const Headers = {
  /** `Bearer <token>` of the caller on whose behalf the message acts. */
  AUTHORIZATION: "Authorization",
  /** JetStream's deduplication key; for a submission it is also the run id. */
  MSG_ID: "Nats-Msg-Id",
  /** On a tool task acp-policy forwards: the asker's inbox, where the worker answers. */
  REPLY_TO: "Loom-Reply-To",
  /** Set on a reply that carries a WireError instead of the normal response. */
  ERROR: "Loom-Error",
} as const;

/** A run id must be a single subject token: it becomes part of `loom.v1.runs.<runId>.events`. */
export const RUN_ID_PATTERN = /^[A-Za-z0-9_-]{1,128}$/;
