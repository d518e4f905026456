import type { NatsConnection } from "@nats-io/transport-node";
import { RunCancelContract, RunInputContract } from "../../schemas/contracts.ts";
import { ErrorCode } from "../../schemas/errors.ts";
import { PolicyAction } from "../../schemas/policy.ts";
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
import { runResource } from "./run-access.ts";
import type { RunDriver } from "./run-driver.ts";
import type { RunMachineEvent } from "./run-machine.ts";
import { storedSnapshot } from "./run-restore.ts";
import type { RunStore } from "./run-store.ts";

export interface RunControlOptions {
  nc: NatsConnection;
  runs: RunStore;
  driver: RunDriver;
  log: Logger;
  policyTimeoutMs: number;
  /** acp-policy's grant keys: a question from a task is asked with that task's grant. */
  grantKeys: GrantKeys;
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
      const stored = await options.runs.getActive(runId);
      const definition = stored.record.definition;
      const snapshot = definition === undefined ? undefined : storedSnapshot(definition, stored.record);
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
      const decision = await authorize(
        options.nc,
        {
          action: PolicyAction.RUNS_APPROVE,
          resource: { workflow: stored.record.workflowId },
          runId,
          stepId,
        },
        {
          authorization: context.authorization,
          timeoutMs: options.policyTimeoutMs,
          what: `answering ${runId}`,
        },
      );
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

  const cancel = serveCancel(options);
  return {
    async stop() {
      await input.stop();
      await cancel.stop();
      await elicitations.stop();
    },
  };
}

function serveCancel(options: RunControlOptions): Service {
  return serve(options.nc, {
    subject: Subjects.RUN_CANCEL_ALL,
    contract: RunCancelContract,
    log: options.log,
    handle: async (body, context) => {
      const runId = runIdOfSubject(context.subject);
      const stored = await options.runs.getActive(runId);
      // Every replica hears a cancel; only one that may drive the run asks policy and answers.
      if (!options.driver.mayDrive(stored)) return NO_REPLY;
      const decision = await authorize(
        options.nc,
        { action: PolicyAction.RUNS_CANCEL, resource: runResource(stored.record), runId },
        {
          authorization: context.authorization,
          timeoutMs: options.policyTimeoutMs,
          what: `canceling ${runId}`,
        },
      );
      const by = `${decision.principal.id}${body.reason === undefined ? "" : ` (${body.reason})`}`;
      const state = await options.driver.deliver(stored, { type: "RUN.CANCEL", by });
      // Undefined: another live replica drives the run and answers for it.
      return state === undefined ? NO_REPLY : ({ runId, state } satisfies RunControlReply);
    },
  });
}
