import type { z } from "zod";
import { RunCancelContract, RunInputContract } from "../../../schemas/contracts.ts";
import type { RunControlReplySchema } from "../../../schemas/run.ts";
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

/** `loom runs input <runId> --approve|--reject|--text|--data`: answers what a run waits for. */
export function runsInputCommand(
  runId: string,
  options: ControlOptions & {
    approved: boolean | undefined;
    text: string | undefined;
    data: Record<string, unknown> | undefined;
    step: string | undefined;
    comment: string | undefined;
  },
): Promise<ExitCode> {
  return control(runId, options, (nc, headers) =>
    request(
      nc,
      runInputSubject(runId),
      RunInputContract,
      {
        ...(options.approved === undefined ? {} : { approved: options.approved }),
        ...(options.text === undefined ? {} : { text: options.text }),
        ...(options.data === undefined ? {} : { data: options.data }),
        ...(options.step === undefined ? {} : { stepId: options.step }),
        ...(options.comment === undefined ? {} : { comment: options.comment }),
      },
      { timeoutMs: CONTROL_TIMEOUT_MS, headers },
    ),
  );
}

/** `loom runs cancel <runId>`: cancels a run and the steps it has in flight. */
export function runsCancelCommand(
  runId: string,
  options: ControlOptions & { reason: string | undefined },
): Promise<ExitCode> {
  return control(runId, options, (nc, headers) =>
    request(
      nc,
      runCancelSubject(runId),
      RunCancelContract,
      options.reason === undefined ? {} : { reason: options.reason },
      {
        timeoutMs: CONTROL_TIMEOUT_MS,
        headers,
      },
    ),
  );
}

/** Sends one control request with the caller's token and prints the run's state after it. */
async function control(
  runId: string,
  options: ControlOptions,
  send: (
    nc: Awaited<ReturnType<typeof connectCli>>,
    headers: Record<string, string | undefined>,
  ) => Promise<z.infer<typeof RunControlReplySchema>>,
): Promise<ExitCode> {
  const nc = await connectCli(options.nats);
  try {
    const reply = await send(nc, {
      [Headers.AUTHORIZATION]: options.token === undefined ? undefined : `Bearer ${options.token}`,
    });
    const state = stateName(reply.state);
    console.log(options.json ? JSON.stringify({ ...reply, state }) : `run ${runId} is ${state}`);
    return ExitCode.OK;
  } finally {
    await nc.close();
  }
}
