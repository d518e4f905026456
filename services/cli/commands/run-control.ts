import { RunCancelContract, RunInputContract } from "../../../schemas/contracts.ts";
import { Headers, runCancelSubject, runInputSubject } from "../../../schemas/subjects.ts";
import { request } from "../../kit/index.ts";
import { connectCli } from "../connection.ts";
import { ExitCode } from "../exit-codes.ts";
import { stateName } from "../render.ts";

const CONTROL_TIMEOUT_MS = 15_000;

interface ControlOptions {
  nats: string;
  token: string | undefined;
  json: boolean;
}

/** `loom runs input <runId> --approve|--reject`: answers the approval a run waits for. */
export async function runsInputCommand(
  runId: string,
  options: ControlOptions & { approved: boolean; step: string | undefined; comment: string | undefined },
): Promise<ExitCode> {
  const nc = await connectCli(options.nats);
  try {
    const reply = await request(
      nc,
      runInputSubject(runId),
      RunInputContract,
      {
        approved: options.approved,
        ...(options.step === undefined ? {} : { stepId: options.step }),
        ...(options.comment === undefined ? {} : { comment: options.comment }),
      },
      { timeoutMs: CONTROL_TIMEOUT_MS, headers: { [Headers.AUTHORIZATION]: bearer(options.token) } },
    );
    console.log(
      options.json
        ? JSON.stringify({ ...reply, state: stateName(reply.state) })
        : `run ${runId} is ${stateName(reply.state)}`,
    );
    return ExitCode.OK;
  } finally {
    await nc.close();
  }
}

/** `loom runs cancel <runId>`: cancels a run and the steps it has in flight. */
export async function runsCancelCommand(
  runId: string,
  options: ControlOptions & { reason: string | undefined },
): Promise<ExitCode> {
  const nc = await connectCli(options.nats);
  try {
    const reply = await request(
      nc,
      runCancelSubject(runId),
      RunCancelContract,
      options.reason === undefined ? {} : { reason: options.reason },
      { timeoutMs: CONTROL_TIMEOUT_MS, headers: { [Headers.AUTHORIZATION]: bearer(options.token) } },
    );
    console.log(
      options.json
        ? JSON.stringify({ ...reply, state: stateName(reply.state) })
        : `run ${runId} is ${stateName(reply.state)}`,
    );
    return ExitCode.OK;
  } finally {
    await nc.close();
  }
}

function bearer(token: string | undefined): string | undefined {
  return token === undefined ? undefined : `Bearer ${token}`;
}
