import type { NatsConnection } from "@nats-io/transport-node";
import { RunElicitAnswerContract, RunElicitContract } from "../../schemas/contracts.ts";
import { ErrorCode } from "../../schemas/errors.ts";
import type { RunControlReply, RunInput } from "../../schemas/run.ts";
import { ElicitAction, type ElicitAnswer, ElicitAnswerSchema } from "../../schemas/sampling.ts";
import { runElicitAnswerSubject, runIdOfSubject, Subjects } from "../../schemas/subjects.ts";
import { FOLLOW_UP_SECONDS, type GrantKeys, verifyGrant } from "../kit/grant-check.ts";
import {
  describeIssues,
  type JsonSchemaValidator,
  type Logger,
  LoomError,
  NO_REPLY,
  request,
  serve,
} from "../kit/index.ts";
import type { RunDriver } from "./run-driver.ts";
import type { PendingElicitation } from "./run-machine.ts";
import type { RunStore, StoredRun } from "./run-store.ts";

/** How long an answer waits for the replica driving the run to take it. */
const FORWARD_TIMEOUT_MS = 5_000;

export interface ElicitationOptions {
  nc: NatsConnection;
  runs: RunStore;
  driver: RunDriver;
  log: Logger;
  grantKeys: GrantKeys;
}

/**
 * Serves MCP servers' questions (elicitation) and the answers to them. Both subjects go to every
 * replica, because only the one driving the run (its tool call is in flight there) may change it:
 * that one records the question or applies the answer; the others stay silent.
 */
export function serveElicitations(options: ElicitationOptions): { stop(): Promise<void> } {
  const questions = serve(options.nc, {
    subject: Subjects.RUN_ELICIT_ALL,
    contract: RunElicitContract,
    log: options.log,
    handle: async (body, context) => {
      const runId = runIdOfSubject(context.subject);
      const execution = options.driver.driving(runId);
      const stored = await options.runs.getActive(runId);
      if (execution === undefined) return NO_REPLY;
      // Only a task of this run's step asks its user, presenting the grant it was sent with.
      const claims = await verifyGrant(context.authorization, options.grantKeys, FOLLOW_UP_SECONDS).catch(
        () => undefined,
      );
      if (claims?.run !== stored.record.runId || claims.step !== body.stepId) {
        throw new LoomError(
          ErrorCode.UNAUTHENTICATED,
          `only a task of run ${runId}, with its step's grant, may ask its user for input`,
        );
      }
      if (context.reply === undefined) {
        throw new LoomError(ErrorCode.INVALID_MESSAGE, "a question needs a reply subject for its answer");
      }
      await execution.elicit(body, context.reply);
      options.log.info(
        { run_id: runId, step_id: body.stepId, mcp_server: body.server },
        "run waits for an answer",
      );
      // The answer is published to the asker's reply subject once someone gives it.
      return NO_REPLY;
    },
  });
  const answers = serve(options.nc, {
    subject: Subjects.RUN_ELICIT_ANSWER_ALL,
    contract: RunElicitAnswerContract,
    log: options.log,
    handle: async (body, context) => {
      const runId = runIdOfSubject(context.subject);
      const execution = options.driver.driving(runId);
      if (execution === undefined) return NO_REPLY;
      const state = await execution.send({
        type: "STEP.ELICIT_ANSWERED",
        stepId: body.stepId,
        answer: body.answer,
      });
      options.log.info(
        { run_id: runId, step_id: body.stepId },
        "answer handed over by another replica applied",
      );
      return { runId, state } satisfies RunControlReply;
    },
  });
  return {
    async stop() {
      await questions.stop();
      await answers.stop();
    },
  };
}

/**
 * The answer `loom runs input` gives a server's question: `--data` accepts with that content
 * (checked against the requested schema), `--reject` declines.
 */
export function elicitAnswerOf(
  input: RunInput,
  stepId: string,
  pending: PendingElicitation,
  by: string,
  validator: JsonSchemaValidator,
): ElicitAnswer {
  if (input.approved === false) return { action: ElicitAction.DECLINE, by };
  if (input.data === undefined && input.approved !== true) {
    throw new LoomError(
      ErrorCode.INVALID_INPUT,
      `step ${stepId} waits for an answer to ${pending.server}'s question: give --data '{...}' matching its schema, or --reject to decline`,
    );
  }
  const content = input.data ?? {};
  validator.assertValid(pending.requestedSchema, content, `the answer to ${pending.server}'s question`);
  const parsed = ElicitAnswerSchema.safeParse({ action: ElicitAction.ACCEPT, content, by });
  if (!parsed.success) {
    throw new LoomError(
      ErrorCode.INVALID_INPUT,
      `an answer holds strings, numbers, booleans and lists of strings only: ${describeIssues(parsed.error.issues)}`,
    );
  }
  return parsed.data;
}

/**
 * Applies an answer: here when this replica drives the run (or may take it over), else by handing
 * it to the replica that does.
 */
export async function deliverAnswer(
  options: ElicitationOptions,
  stored: StoredRun,
  stepId: string,
  answer: ElicitAnswer,
): Promise<RunControlReply> {
  const { runId } = stored.record;
  const state = await options.driver.deliver(stored, { type: "STEP.ELICIT_ANSWERED", stepId, answer });
  if (state !== undefined) return { runId, state };
  return request(
    options.nc,
    runElicitAnswerSubject(runId),
    RunElicitAnswerContract,
    { stepId, answer },
    {
      timeoutMs: FORWARD_TIMEOUT_MS,
    },
  );
}
