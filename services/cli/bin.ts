#!/usr/bin/env node
import { Command, Option } from "commander";
import { LoomError } from "../kit/index.ts";
import { devCommand } from "./commands/dev.ts";
import { runsGetCommand } from "./commands/runs.ts";
import { submitCommand } from "./commands/submit.ts";
import { tokenIssueCommand } from "./commands/token.ts";
import { toolsListCommand } from "./commands/tools.ts";
import { readCliConfig } from "./config.ts";
import { ExitCode } from "./exit-codes.ts";

const config = readCliConfig();
const program = new Command("loom")
  .description("Loom: run workflows whose tool calls go through policy, over NATS.")
  .addOption(new Option("--nats <url>", "NATS server URL").env("NATS_URL").default(config.NATS_URL))
  .addOption(new Option("--token <token>", "bearer token to act with").env("LOOM_TOKEN"))
  .showHelpAfterError();

/** Runs a command and exits with its code; a LoomError prints as `error CODE: message`. */
function action<Args extends unknown[]>(run: (...args: Args) => Promise<ExitCode> | ExitCode) {
  return async (...args: Args) => {
    try {
      process.exitCode = await run(...args);
    } catch (error) {
      if (error instanceof LoomError) {
        console.error(`error ${error.code}: ${error.message}`);
      } else {
        console.error(`error: ${error instanceof Error ? error.message : String(error)}`);
      }
      process.exitCode = ExitCode.FAILED;
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
  .action(
    action(
      (workflow: string, options: { input?: string; watch: boolean; json: boolean; context?: string }) => {
        const globals = program.opts<{ nats: string; token?: string }>();
        return submitCommand(workflow, {
          nats: globals.nats,
          token: globals.token,
          input: options.input,
          watch: options.watch,
          json: options.json,
          context: options.context,
        });
      },
    ),
  );

const runs = program.command("runs").description("inspect runs");
runs
  .command("get")
  .description("show a run's state and output")
  .argument("<runId>")
  .option("--json", "print JSON", false)
  .action(
    action((runId: string, options: { json: boolean }) =>
      runsGetCommand(runId, { nats: program.opts().nats, json: options.json }),
    ),
  );

const tools = program.command("tools").description("inspect the tool registry");
tools
  .command("list")
  .description("list the tools MCP workers registered, with governance metadata")
  .option("--json", "print JSON", false)
  .action(
    action((options: { json: boolean }) =>
      toolsListCommand({ nats: program.opts().nats, json: options.json }),
    ),
  );

const token = program.command("token").description("development tokens");
token
  .command("issue")
  .description("print a development token (unsigned: for a dev stack only)")
  .requiredOption("--sub <subject>", "who the token speaks for")
  .option(
    "--role <role>",
    "a role (repeatable)",
    (role: string, roles: string[]) => [...roles, role],
    [] as string[],
  )
  .action(
    action((options: { sub: string; role: string[] }) =>
      tokenIssueCommand({ sub: options.sub, role: options.role.length > 0 ? options.role : ["analyst"] }),
    ),
  );

program
  .command("dev")
  .description("run the whole stack locally (what `npm start` does) and a demo workflow")
  .option("--no-demo", "start the stack without running the demo workflow")
  .action(
    action((options: { demo: boolean }) => devCommand({ natsUrl: process.env.NATS_URL, demo: options.demo })),
  );

await program.parseAsync();
