import type { NatsConnection } from "@nats-io/transport-node";
import { RunCancelContract, RunInputContract } from "../../schemas/contracts.ts";
import { ErrorCode } from "../../schemas/errors.ts";
import { PolicyAction, type PolicyDecision } from "../../schemas/policy.ts";
import type { RunControlReply } from "../../schemas/run.ts";
import { runIdOfSubject, Subjects } from "../../schemas/subjects.ts";
import type { GrantKeys } from "../kit/grant-check.ts";
import {
  authorize,
  JsonSchemaValidator,
  type Logger,
  LoomError,
  NO_REPLY,
  type Service,
  serve,
} from "../kit/index.ts";
import { awaitedApprovals, awaitedElicitations, awaitedRemoteInputs, findStep } from "./demands.ts";
import { deliverAnswer, elicitAnswerOf, serveElicitations } from "./elicitations.ts";
import { decideOnRun, findRun, runResource } from "./run-access.ts";
import type { RunDriver } from "./run-driver.ts";
import type { RunMachineEvent } from "./run-machine.ts";
import { assertNotEnded, type RunStore, type StoredRun } from "./run-store.ts";
import type { RunTokens } from "./run-tokens.ts";
import { restoredSnapshot } from "./step-timeline.ts";

export interface RunControlOptions {
  nc: NatsConnection;
  runs: RunStore;
  driver: RunDriver;
  log: Logger;
  policyTimeoutMs: number;
  /** acp-policy's grant keys: a question from a task is asked with that task's grant. */
  grantKeys: GrantKeys;
  /** Each run's own token: a delegated child run is canceled with it. */
  runTokens: RunTokens;
}

/**
 * Serves human input (approvals) and cancellation. Input is taken by one replica (queue group):
 * a run waiting for input has no owner, so whoever takes it claims it. Cancel goes to every
 * replica, because the run may be mid-step on any of them: the one driving it (or, when none
 * does, the one that claims it) applies it and answers.
 */
export function serveRunControl(options: RunControlOptions): { stop(): Promise<void> } {
  const validator = new JsonSchemaValidator();
  const elicitations = serveElicitations(options);
  const input = serve(options.nc, {
    subject: Subjects.RUN_INPUT_ALL,
    queue: "orchestrator-input",
    contract: RunInputContract,
    log: options.log,
    handle: async (body, context) => {
      const runId = runIdOfSubject(context.subject);
      // Decided before anything of the run is revealed: whether it exists, has ended or waits.
      const { stored, decision } = await decideOnRun(
        options,
        runId,
        await findRun(options.runs, runId),
        (record) => ({
          action: PolicyAction.RUNS_APPROVE,
          resource: { workflow: record.workflowId },
          runId,
          ...(body.stepId === undefined ? {} : { stepId: body.stepId }),
        }),
        context.authorization,
      );
      assertNotEnded(stored);
      const definition = stored.record.definition;
      const snapshot = definition === undefined ? undefined : restoredSnapshot(stored.record);
      const approvals = snapshot === undefined ? [] : awaitedApprovals(snapshot);
      const remoteInputs = snapshot === undefined ? [] : awaitedRemoteInputs(snapshot);
      const elicitations = snapshot === undefined ? [] : awaitedElicitations(snapshot);
      const waiting = [...approvals, ...remoteInputs, ...elicitations];
      const stepId = body.stepId ?? (waiting.length === 1 ? waiting[0] : undefined);
      if (stepId === undefined || !waiting.includes(stepId)) {
        const expected = waiting.length === 0 ? "no input" : `one of: ${waiting.join(", ")}`;
        throw new LoomError(
          ErrorCode.RUN_NOT_WAITING,
          `run ${runId} waits for ${expected}${body.stepId ? `, not ${body.stepId}` : ""}`,
        );
      }
      const by = decision.principal.id;
      const question = snapshot?.context.elicitations?.[stepId];
      if (elicitations.includes(stepId) && question !== undefined) {
        const answer = elicitAnswerOf(body, stepId, question, by, validator);
        return deliverAnswer(options, stored, stepId, answer);
      }
      let event: RunMachineEvent;
      if (approvals.includes(stepId)) {
        const step = definition === undefined ? undefined : findStep(definition, stepId);
        const roles = step !== undefined && "approval" in step ? step.approval.roles : [];
        if (!decision.principal.roles.some((role) => roles.includes(role))) {
          throw new LoomError(
            ErrorCode.POLICY_DENIED,
            `only ${roles.join(", ")} may answer approval ${stepId}`,
            {
              details: { rule: `approval:${stepId}` },
            },
          );
        }
        if (body.approved === undefined) {
          throw new LoomError(
            ErrorCode.INVALID_INPUT,
            `approval ${stepId} takes a decision: approve or reject`,
          );
        }
        event = {
          type: "APPROVAL.ANSWERED",
          stepId,
          approved: body.approved,
          by,
          ...(body.comment === undefined ? {} : { comment: body.comment }),
        };
      } else {
        const text = body.text ?? body.comment;
        event = {
          type: "STEP.INPUT_GIVEN",
          stepId,
          answer: {
            by,
            ...(body.approved === undefined ? {} : { approved: body.approved }),
            ...(text === undefined ? {} : { text }),
            ...(body.data === undefined ? {} : { data: body.data }),
          },
        };
      }
      const state = await options.driver.deliver(stored, event);
      if (state === undefined)
        throw new LoomError(ErrorCode.RUN_NOT_WAITING, `run ${runId} is being driven elsewhere; try again`);
      return { runId, state } satisfies RunControlReply;
    },
  });

  const cancels = serveCancel(options);
  return {
    async stop() {
      await input.stop();
      await Promise.all(cancels.map((cancel) => cancel.stop()));
      await elicitations.stop();
    },
  };
}

/** A cancel decided for one run: the run and the decision, or no reply from this replica. */
type DecidedCancel = { stored: StoredRun; decision: PolicyDecision } | typeof NO_REPLY;

function serveCancel(options: RunControlOptions): Service[] {
  const cancelOn = (
    subject: string,
    decide: (runId: string, authorization: string | undefined) => Promise<DecidedCancel>,
  ) =>
    serve(options.nc, {
      subject,
      contract: RunCancelContract,
      log: options.log,
      handle: async (body, context) => {
        const decided = await decide(runIdOfSubject(context.subject), context.authorization);
        if (decided === NO_REPLY) return NO_REPLY;
        const { stored, decision } = decided;
        const by = `${decision.principal.id}${body.reason === undefined ? "" : ` (${body.reason})`}`;
        const state = await options.driver.deliver(stored, { type: "RUN.CANCEL", by });
        // Undefined: another live replica drives the run and answers for it.
        return state === undefined
          ? NO_REPLY
          : ({ runId: stored.record.runId, state } satisfies RunControlReply);
      },
    });
  return [
    cancelOn(Subjects.RUN_CANCEL_ALL, async (runId, authorization) => {
      const found = await findRun(options.runs, runId);
      // Every replica hears a cancel; only one that may drive the run asks policy and answers (for
      // a run that does not exist, each says so, after checking the caller's token).
      if (found !== undefined && !options.driver.mayDrive(found)) return NO_REPLY;
      const decided = await decideOnRun(
        options,
        runId,
        found,
        (record) => ({ action: PolicyAction.RUNS_CANCEL, resource: runResource(record), runId }),
        authorization,
      );
      assertNotEnded(decided.stored);
      return decided;
    }),
    // A delegate step canceled with its run: the child run it started is canceled as that child's
    // own decision, with the child's run token (which names the same principal), on the subject
    // only an orchestrator may publish to and the policy subject only an orchestrator may ask on.
    cancelOn(Subjects.RUN_CANCEL_DELEGATED_ALL, async (runId) => {
      const stored = await options.runs.getActive(runId);
      if (!options.driver.mayDrive(stored)) return NO_REPLY;
      const { workflowId, workflowVersion } = stored.record;
      const decision = await authorize(
        options.nc,
        {
          action: PolicyAction.RUNS_CANCEL,
          resource: runResource(stored.record),
          runId,
          ...(workflowVersion === undefined
            ? {}
            : { runWorkflow: { id: workflowId, version: workflowVersion } }),
        },
        {
          authorization: await options.runTokens.authorization(runId),
          timeoutMs: options.policyTimeoutMs,
          channel: "run",
          what: `canceling delegated run ${runId}`,
        },
      );
      return { stored, decision };
    }),
  ];
}
