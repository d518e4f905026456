#!/usr/bin/env node
import { Argument, Command, InvalidArgumentError, Option } from "commander";
import packageJson from "../../package.json" with { type: "json" };
import { shortStateName, TaskState } from "../../schemas/a2a.ts";
import { DurationSchema } from "../../schemas/duration.ts";
import { ErrorCode } from "../../schemas/errors.ts";
import { NatsUser } from "../../schemas/nats-users.ts";
import { PolicyAction } from "../../schemas/policy.ts";
import { LoomError, setupTelemetry } from "../kit/index.ts";
import { agentsCardCommand, submitA2aCommand } from "./commands/a2a.ts";
import { auditTailCommand, auditVerifyCommand } from "./commands/audit.ts";
import { devCommand } from "./commands/dev.ts";
import { feedbackCommand } from "./commands/feedback.ts";
import { memoryClearCommand, memoryGetCommand } from "./commands/memory.ts";
import { natsPasswordsCommand } from "./commands/nats.ts";
import { policyApplyCommand, policyExplainCommand, policyTestCommand } from "./commands/policy.ts";
import { runsCancelCommand, runsInputCommand } from "./commands/run-control.ts";
import { runsEventsCommand, runsGetCommand, runsListCommand, runsRerunCommand } from "./commands/runs.ts";
import { serversListCommand } from "./commands/servers.ts";
import { streamsLockPinsCommand, streamsReplicateCommand } from "./commands/streams.ts";
import { readInput, submitCommand } from "./commands/submit.ts";
import { DEFAULT_DATA_DIR, tokenIssueCommand } from "./commands/token.ts";
import { toolStatsCommand } from "./commands/tool-stats.ts";
import { toolsListCommand } from "./commands/tools.ts";
import { runsTraceCommand } from "./commands/trace.ts";
import {
  workflowApplyCommand,
  workflowGraphCommand,
  workflowListCommand,
  workflowShowCommand,
} from "./commands/workflow.ts";
import { COMPLETION_SHELLS, type CompletionShell, completionScript } from "./completion.ts";
import { natsPasswordsOf, readCliConfig } from "./config.ts";
import { explainFailure } from "./connection.ts";
import { ExitCode, exitCodeForError } from "./exit-codes.ts";
import { natsUrlFor } from "./nats-users.ts";

const config = readCliConfig();
// A command must not hang on an absent collector (the exporter retries a refused connection):
// unless told otherwise, spans that cannot be exported within 500 ms are given up on.
const telemetry = setupTelemetry({ service: "loom-cli", config, defaultExportTimeoutMs: 500 });
const program = new Command("loom")
  .description("Loom: run workflows whose tool calls go through policy, over NATS.")
  .addHelpText("after", "\n`loom --version` (or -V) prints Loom's version.")
  .addOption(new Option("--nats <url>", "NATS server URL").env("NATS_URL").default(config.NATS_URL))
  .addOption(new Option("--token <token>", "bearer token to act with").env("LOOM_TOKEN"))
  .showHelpAfterError();

/**
 * The NATS URL a command connects with, as the user it acts as: `submitter`, or `policy-admin` for
 * operators' commands. A password comes from the URL, `LOOM_NATS_<USER>_PASSWORD`, or for a NATS
 * on this machine the data dir's `nats-users.env` (which `npm start` makes).
 */
function natsAs(user: NatsUser): Promise<string> {
  return natsUrlFor(
    {
      url: program.opts<{ nats: string }>().nats,
      dataDir: config.LOOM_DATA_DIR,
      passwords: natsPasswordsOf(config),
    },
    user,
  );
}

/** What a command that acts for the caller takes: NATS as `user`, and the caller's token. */
async function callerAs(user: NatsUser): Promise<{ nats: string; token: string | undefined }> {
  return { nats: await natsAs(user), token: program.opts<{ token?: string }>().token };
}

/** `completed`, `input-required`, … (or the wire name) as the A2A task state. */
function taskStateOf(name: string): TaskState {
  const state = Object.values(TaskState).find(
    (candidate) => candidate === name || shortStateName(candidate) === name.toLowerCase(),
  );
  if (state === undefined) {
    throw new LoomError(
      ErrorCode.INVALID_INPUT,
      `unknown state "${name}"; one of: ${Object.values(TaskState).map(shortStateName).join(", ")}`,
    );
  }
  return state;
}

/**
 * Runs a command and exits with its code; a LoomError prints as `error CODE: message` and exits as
 * the exit-code table says (2 for a refusal, 1 for anything else).
 */
function action<Args extends unknown[]>(run: (...args: Args) => Promise<ExitCode> | ExitCode) {
  return async (...args: Args) => {
    try {
      process.exitCode = await run(...args);
    } catch (thrown) {
      const error = await explainFailure(thrown, () => natsAs(NatsUser.SUBMITTER));
      if (error instanceof LoomError) {
        console.error(`error ${error.code}: ${error.message}`);
        process.exitCode = exitCodeForError(error.code);
      } else {
        console.error(`error: ${error.message}`);
        process.exitCode = ExitCode.FAILED;
      }
    }
  };
}

program
  .command("submit")
  .description("submit a run of a registered workflow (by id) or of a workflow file")
  .argument("<workflow>", "workflow id (e.g. hello, hello@1) or path to a .yaml/.json definition")
  .option("-i, --input <json>", "run input as JSON, or @file.json")
  .option("-w, --watch", "follow the run until it ends; exit 0 completed, 1 failed, 2 rejected", false)
  .option("--json", "print JSON instead of text", false)
  .option("--context <contextId>", "A2A context to run in")
  .option("--a2a <url>", "drive any A2A agent at this base URL instead: <workflow> names the skill")
  .action(
    action(
      async (
        workflow: string,
        options: { input?: string; watch: boolean; json: boolean; context?: string; a2a?: string },
      ) => {
        const globals = program.opts<{ nats: string; token?: string }>();
        if (options.a2a !== undefined) {
          return submitA2aCommand(options.a2a, workflow, {
            token: globals.token,
            input: options.input,
            watch: options.watch,
            json: options.json,
          });
        }
        return submitCommand(workflow, {
          nats: await natsAs(NatsUser.SUBMITTER),
          token: globals.token,
          input: options.input,
          watch: options.watch,
          json: options.json,
          context: options.context,
          telemetry,
        });
      },
    ),
  );

const agents = program.command("agents").description("A2A agents");
agents
  .command("card")
  .description("print an A2A Agent Card: Loom's own, or any agent's with --url")
  .option("--url <url>", "the agent's base URL", config.LOOM_A2A_URL)
  .action(action((options: { url: string }) => agentsCardCommand(options)));

const workflow = program.command("workflow").description("register and inspect workflow definitions");
workflow
  .command("apply")
  .description("validate a definition (schema and JSONata) and register it as a new version")
  .argument("<file>", "a .yaml or .json workflow definition")
  .option("--json", "print JSON", false)
  .action(
    action(async (file: string, options: { json: boolean }) =>
      workflowApplyCommand(file, { ...(await callerAs(NatsUser.SUBMITTER)), json: options.json }),
    ),
  );
workflow
  .command("graph")
  .description("print the compiled state machine as a Mermaid state diagram (a file: offline)")
  .argument("<workflow>", "a registered id (hello, hello@1) or a definition file")
  .action(
    action(async (reference: string) =>
      workflowGraphCommand(reference, { nats: await natsAs(NatsUser.SUBMITTER) }),
    ),
  );
workflow
  .command("list")
  .description("list the registered workflows and their versions")
  .option("--json", "print JSON", false)
  .action(
    action(async (options: { json: boolean }) =>
      workflowListCommand({ nats: await natsAs(NatsUser.SUBMITTER), json: options.json }),
    ),
  );
workflow
  .command("show")
  .description("print a registered definition (the latest version unless --version names one)")
  .argument("<id>")
  .option("--version <n>", "the version to show", (value: string) => {
    const version = Number(value);
    if (!Number.isInteger(version) || version < 1) throw new InvalidArgumentError("a version is 1, 2, …");
    return version;
  })
  .option("--json", "print JSON instead of YAML", false)
  .action(
    action(async (id: string, options: { version?: number; json: boolean }) =>
      workflowShowCommand(id, {
        nats: await natsAs(NatsUser.SUBMITTER),
        version: options.version,
        json: options.json,
      }),
    ),
  );

const memory = program.command("memory").description("context memory shared by runs of one A2A context");
memory
  .command("get")
  .description("show what earlier runs of a context left in its memory")
  .argument("<contextId>")
  .option("--json", "print JSON", false)
  .action(
    action(async (contextId: string, options: { json: boolean }) =>
      memoryGetCommand(contextId, { ...(await callerAs(NatsUser.SUBMITTER)), json: options.json }),
    ),
  );
memory
  .command("clear")
  .description("forget a context's memory")
  .argument("<contextId>")
  .action(
    action(async (contextId: string) => memoryClearCommand(contextId, await callerAs(NatsUser.SUBMITTER))),
  );

const runs = program.command("runs").description("inspect and steer runs");
runs
  .command("input")
  .description(
    "answer a run waiting for input: an approval, or a question from a remote agent or an MCP server",
  )
  .argument("<runId>")
  .addOption(new Option("--approve", "approve").conflicts("reject"))
  .addOption(new Option("--reject", "reject (an MCP server's question: decline)").conflicts("approve"))
  .option("--text <text>", "an answer in words, for a remote agent that asked")
  .option("--data <json>", "an answer as a JSON object, for a remote agent or an MCP server that asked")
  .option("--step <stepId>", "the step answered, when the run waits for several")
  .option("--comment <text>", "a note kept with the answer")
  .option("--json", "print JSON", false)
  .action(
    action(
      async (
        runId: string,
        options: {
          approve?: boolean;
          reject?: boolean;
          text?: string;
          data?: string;
          step?: string;
          comment?: string;
          json: boolean;
        },
      ) => {
        const decided = options.approve === true || options.reject === true;
        if (!decided && options.text === undefined && options.data === undefined) {
          throw new Error("say --approve or --reject, or answer with --text or --data");
        }
        const globals = program.opts<{ nats: string; token?: string }>();
        return runsInputCommand(runId, {
          nats: await natsAs(NatsUser.SUBMITTER),
          token: globals.token,
          json: options.json,
          approved: decided ? options.approve === true : undefined,
          text: options.text,
          data: options.data === undefined ? undefined : await readInput(options.data, "--data"),
          step: options.step,
          comment: options.comment,
        });
      },
    ),
  );
runs
  .command("cancel")
  .description("cancel a run; steps in flight are told to stop")
  .argument("<runId>")
  .option("--reason <text>", "why, kept with the run")
  .option("--json", "print JSON", false)
  .action(
    action(async (runId: string, options: { reason?: string; json: boolean }) => {
      const globals = program.opts<{ nats: string; token?: string }>();
      return runsCancelCommand(runId, {
        nats: await natsAs(NatsUser.SUBMITTER),
        token: globals.token,
        json: options.json,
        reason: options.reason,
      });
    }),
  );
runs
  .command("get")
  .description("show a run: its steps as a timeline, what it waits for and who may answer, its output")
  .argument("<runId>")
  .option("--json", "print JSON", false)
  .action(
    action(async (runId: string, options: { json: boolean }) =>
      runsGetCommand(runId, { ...(await callerAs(NatsUser.SUBMITTER)), json: options.json }),
    ),
  );
runs
  .command("events")
  .description("print a run's events so far; with --follow, then follow it live until it ends")
  .argument("<runId>")
  .option("-f, --follow", "keep following until the run ends, and exit as submit --watch does", false)
  .option("--json", "print each event as a JSON line (an A2A StreamResponse)", false)
  .action(
    action(async (runId: string, options: { follow: boolean; json: boolean }) =>
      runsEventsCommand(runId, { ...(await callerAs(NatsUser.SUBMITTER)), ...options }),
    ),
  );
runs
  .command("rerun")
  .description(
    "start a failed or canceled run again as a new run, reusing the results of the steps before --from",
  )
  .argument("<runId>")
  .option("--from <step>", "the top-level step to run again from (default: where the run stopped)")
  .option("--watch", "follow the new run until it ends", false)
  .option("--json", "print JSON", false)
  .action(
    action(async (runId: string, options: { from?: string; watch: boolean; json: boolean }) =>
      runsRerunCommand(runId, {
        ...(await callerAs(NatsUser.SUBMITTER)),
        from: options.from,
        watch: options.watch,
        json: options.json,
      }),
    ),
  );
runs
  .command("list")
  .description("list the runs you may read, newest first")
  .option("--state <state>", "only runs in this state (completed, failed, input-required, ...)")
  .option("--workflow <id>", "only runs of this workflow")
  .option("--since <time>", "only runs updated at or after this ISO 8601 time")
  .option("--limit <n>", "runs per page (1-100)", (value) => Number.parseInt(value, 10), 50)
  .option("--cursor <cursor>", "the next page, as the previous page printed it")
  .option("--json", "print JSON", false)
  .action(
    action(
      async (options: {
        state?: string;
        workflow?: string;
        since?: string;
        limit: number;
        cursor?: string;
        json: boolean;
      }) =>
        runsListCommand(
          {
            ...(options.state === undefined ? {} : { state: taskStateOf(options.state) }),
            ...(options.workflow === undefined ? {} : { workflow: options.workflow }),
            ...(options.since === undefined ? {} : { since: options.since }),
            limit: options.limit,
            ...(options.cursor === undefined ? {} : { cursor: options.cursor }),
          },
          { ...(await callerAs(NatsUser.SUBMITTER)), json: options.json },
        ),
    ),
  );

runs
  .command("trace")
  .description("draw a run's spans as a waterfall, with the link that opens the trace in Jaeger")
  .argument("<runId>")
  .option("--json", "print the spans as JSON", false)
  .addOption(
    new Option("--jaeger-ui <url>", "Jaeger's web UI, for the trace's link")
      .env("LOOM_JAEGER_UI")
      .default(config.LOOM_JAEGER_UI),
  )
  .action(
    action(async (runId: string, options: { json: boolean; jaegerUi: string }) =>
      runsTraceCommand(runId, {
        ...(await callerAs(NatsUser.POLICY_ADMIN)),
        json: options.json,
        jaegerUi: options.jaegerUi,
      }),
    ),
  );

const tools = program.command("tools").description("inspect the tool registry");
tools
  .command("list")
  .description("list the tools MCP workers registered, with governance metadata")
  .option("--json", "print JSON", false)
  .action(
    action(async (options: { json: boolean }) =>
      toolsListCommand({ nats: await natsAs(NatsUser.SUBMITTER), json: options.json }),
    ),
  );

tools
  .command("stats")
  .description(
    "calls, error rate, latency p50/p95/p99, cached share and feedback per tool and server version",
  )
  .addOption(
    new Option("--since <duration>", "how far back to look (30m, 1h, 168h, ...)")
      .argParser((text: string) => {
        const parsed = DurationSchema.safeParse(text);
        if (!parsed.success || parsed.data === 0)
          throw new InvalidArgumentError('use for example "1h" or "30m"');
        return parsed.data;
      })
      .default(3_600_000, "1h"),
  )
  .option("--json", "print JSON", false)
  .action(
    action(async (options: { since: number; json: boolean }) =>
      toolStatsCommand({
        ...(await callerAs(NatsUser.SUBMITTER)),
        sinceMs: options.since,
        json: options.json,
      }),
    ),
  );

program
  .command("feedback")
  .description("record a verdict on the tool call a step of a run made (for loom tools stats)")
  .argument("<runId>")
  .argument("<stepId>")
  .addOption(new Option("--ok", "the call did its job").conflicts("bad"))
  .addOption(new Option("--bad", "the call did not do its job").conflicts("ok"))
  .option("--comment <text>", "why, kept with the verdict")
  .option("--json", "print JSON", false)
  .action(
    action(
      async (
        runId: string,
        stepId: string,
        options: { ok?: boolean; bad?: boolean; comment?: string; json: boolean },
      ) => {
        if (options.ok !== true && options.bad !== true) throw new Error("say --ok or --bad");
        const globals = program.opts<{ nats: string; token?: string }>();
        return feedbackCommand(runId, stepId, {
          nats: await natsAs(NatsUser.SUBMITTER),
          token: globals.token,
          verdict: options.ok === true ? "ok" : "bad",
          comment: options.comment,
          json: options.json,
        });
      },
    ),
  );

const servers = program.command("servers").description("inspect the MCP servers the workers run");
servers
  .command("list")
  .description("list MCP servers with governance, transport, health, replicas and versions")
  .option("--json", "print JSON", false)
  .action(
    action(async (options: { json: boolean }) =>
      serversListCommand({ nats: await natsAs(NatsUser.SUBMITTER), json: options.json }),
    ),
  );

const streams = program.command("streams").description("operate Loom's streams and buckets");
streams
  .command("replicate")
  .description(
    "move every existing Loom stream and bucket to <count> replicas, as the operator's own NATS user named in --nats (none of Loom's users may change a stream)",
  )
  .argument("<count>", "replicas: 1, 3 or 5", (value: string) => {
    if (!["1", "3", "5"].includes(value)) throw new InvalidArgumentError("replicas are 1, 3 or 5");
    return Number(value);
  })
  .option("--json", "print JSON", false)
  .action(
    action(async (count: number, options: { json: boolean }) =>
      streamsReplicateCommand(count, { nats: program.opts<{ nats: string }>().nats, ...options }),
    ),
  );

streams
  .command("lock-pins")
  .description(
    "make the audit key pins bucket (loom_audit_keys) write-once in place, every pin kept, when `loom audit verify` says its pins are replaceable (a bucket made by an older Loom); as the operator's own NATS user named in --nats",
  )
  .option("--json", "print JSON", false)
  .action(
    action(async (options: { json: boolean }) =>
      streamsLockPinsCommand({ nats: program.opts<{ nats: string }>().nats, ...options }),
    ),
  );

const nats = program.command("nats").description("the NATS users Loom's services and callers connect as");
nats
  .command("passwords")
  .description(
    "make every NATS user's password (random, once) in .loom/nats-users.env, which nats-server includes, and each alone in .loom/nats-users/<user>/nats-password.env, which that user's service reads with LOOM_NATS_PASSWORD_FILE",
  )
  .addOption(
    new Option("--data-dir <dir>", "where the passwords file lives")
      .env("LOOM_DATA_DIR")
      .default(DEFAULT_DATA_DIR),
  )
  .action(action((options: { dataDir: string }) => natsPasswordsCommand(options)));

const token = program.command("token").description("development tokens");
token
  .command("issue")
  .description("print a development access token (JWT) signed with the local dev key in .loom/")
  .requiredOption("--sub <subject>", "who the token speaks for")
  .option(
    "--role <role>",
    "a role (repeatable)",
    (role: string, roles: string[]) => [...roles, role],
    [] as string[],
  )
  .option("--ttl <duration>", "how long the token is valid (15m, 1h, ...)", "1h")
  .option("--region <region>", "the caller's region, for data-residency rules")
  .addOption(
    new Option("--data-dir <dir>", "where the dev signing key lives")
      .env("LOOM_DATA_DIR")
      .default(DEFAULT_DATA_DIR),
  )
  .action(
    action((options: { sub: string; role: string[]; ttl: string; region?: string; dataDir: string }) =>
      tokenIssueCommand({
        sub: options.sub,
        role: options.role.length > 0 ? options.role : ["analyst"],
        ttl: options.ttl,
        region: options.region,
        dataDir: options.dataDir,
      }),
    ),
  );

const policy = program.command("policy").description("explain, test and apply policy");
policy
  .command("explain")
  .description("how each rule judges a request made with --token/LOOM_TOKEN (nothing is granted)")
  .option("--action <action>", Object.values(PolicyAction).join(", "), "tools.call")
  .option("--tool <tool>", "<server>.<tool> (or prompt, or resource)")
  .option("--workflow <id>", "workflow id, for workflow.start")
  .option("--args <json>", "the call's arguments, checked against the tool's inputSchema and guards")
  .option("--json", "print JSON", false)
  .action(
    action(
      async (options: {
        action: PolicyAction;
        tool?: string;
        workflow?: string;
        args?: string;
        json: boolean;
      }) => {
        const globals = program.opts<{ nats: string; token?: string }>();
        return policyExplainCommand({
          nats: await natsAs(NatsUser.SUBMITTER),
          token: globals.token,
          ...options,
        });
      },
    ),
  );
policy
  .command("apply")
  .description("validate a policy file (or folder) and make it the active policy of every acp-policy")
  .argument("<path>")
  .action(
    action(async (path: string) => policyApplyCommand(path, { nats: await natsAs(NatsUser.POLICY_ADMIN) })),
  );
policy
  .command("test")
  .description("run policy test cases (input -> expected effect, rule, obligations); exit 1 on a mismatch")
  .argument("<cases>", "YAML file of cases")
  .action(action((cases: string) => policyTestCommand(cases)));

const audit = program.command("audit").description("read and verify the audit trail");
audit
  .command("tail")
  .description("the latest audit records")
  .option("-f, --follow", "keep printing new records", false)
  .option("--run <runId>", "only the records of one run")
  .option("-n, --lines <count>", "how many past records", (value: string) => Number(value), 20)
  .option("--json", "print JSON lines", false)
  .action(
    action(async (options: { follow: boolean; run?: string; lines: number; json: boolean }) =>
      auditTailCommand({ nats: await natsAs(NatsUser.POLICY_ADMIN), ...options }),
    ),
  );
audit
  .command("verify")
  .description("walk the hash chain; exit 1 naming the first broken link")
  .option("--json", "print JSON", false)
  .action(
    action(async (options: { json: boolean }) =>
      auditVerifyCommand({ nats: await natsAs(NatsUser.POLICY_ADMIN), ...options }),
    ),
  );

program
  .command("dev")
  .description("run the whole stack locally (what `npm start` does) and a demo workflow")
  .option("--no-demo", "start the stack without running the demo workflow")
  .option("--jaeger <binary>", "start this Jaeger (default: a jaeger binary on PATH or in the Go bin folder)")
  .option("--no-jaeger", "start no Jaeger")
  .option(
    "--nats-sync",
    "the nats-server it starts fsyncs every write before acknowledging it (infra/nats/sync-always.conf)",
  )
  .action(
    action((options: { demo: boolean; jaeger?: string | false; natsSync?: boolean }) =>
      devCommand({
        natsUrl: process.env.NATS_URL,
        demo: options.demo,
        dataDir: config.LOOM_DATA_DIR,
        natsPort: config.LOOM_DEV_NATS_PORT,
        passwords: natsPasswordsOf(config),
        natsSync: options.natsSync === true,
        logFormat: config.LOG_FORMAT,
        telemetry,
        jaeger: options.jaeger,
        a2aPort: config.LOOM_A2A_PORT,
        mcpServers: config.LOOM_MCP_SERVERS,
      }),
    ),
  );

program
  .command("completion")
  .description('print a shell completion script: eval "$(npx loom completion bash)"')
  .addArgument(new Argument("<shell>").choices(COMPLETION_SHELLS))
  .action(
    action((shell: CompletionShell) => {
      process.stdout.write(completionScript(program, shell));
      return ExitCode.OK;
    }),
  );

/**
 * `--version` before any command (global options aside): `loom workflow show <id> --version N` has
 * a --version of its own, and commander would hand a global option of that name to the program
 * wherever it stands.
 */
function asksForVersion(args: string[]): boolean {
  let index = 0;
  while (args[index] === "--nats" || args[index] === "--token") index += 2;
  return args[index] === "--version" || args[index] === "-V";
}

if (asksForVersion(process.argv.slice(2))) console.log(packageJson.version);
else await program.parseAsync();
await telemetry.shutdown();
