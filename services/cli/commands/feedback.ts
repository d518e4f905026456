import { FeedbackContract } from "../../../schemas/contracts.ts";
import { Headers, runFeedbackSubject } from "../../../schemas/subjects.ts";
import type { Verdict } from "../../../schemas/tool-calls.ts";
import { request } from "../../kit/index.ts";
import { connectCli } from "../connection.ts";
import { ExitCode } from "../exit-codes.ts";

const FEEDBACK_TIMEOUT_MS = 15_000;

/**
 * `loom feedback <runId> <stepId> --ok|--bad`: a verdict on the call a step made.
 */
export async function feedbackCommand(
  runId: string,
  stepId: string,
  options: {
    nats: string;
    token: string | undefined;
    verdict: Verdict;
    comment: string | undefined;
    json: boolean;
  },
): Promise<ExitCode> {
  const nc = await connectCli(options.nats);
  try {
    const reply = await request(
      nc,
      runFeedbackSubject(runId),
      FeedbackContract,
      {
        stepId,
        verdict: options.verdict,
        ...(options.comment === undefined ? {} : { comment: options.comment }),
      },
      {
        timeoutMs: FEEDBACK_TIMEOUT_MS,
        headers: {
          [Headers.AUTHORIZATION]: options.token === undefined ? undefined : `Bearer ${options.token}`,
        },
      },
    );
    console.log(
      options.json
        ? JSON.stringify(reply)
        : `feedback ${reply.verdict} on ${runId}/${stepId}: ${reply.server}.${reply.target} (version ${reply.serverVersion})`,
    );
    return ExitCode.OK;
  } finally {
    await nc.close();
  }
}
