import { MemoryContract } from "../../../schemas/contracts.ts";
import { Subjects } from "../../../schemas/subjects.ts";
import { connectCli, requestAs } from "../connection.ts";
import { ExitCode } from "../exit-codes.ts";
import { formatJson, table } from "../render.ts";

/**
 * `loom memory get <contextId>`: what earlier runs of a context left for the next ones, read
 * through the orchestrators (policy: `memory.read`, the context's owner and admins by default).
 */
export async function memoryGetCommand(
  contextId: string,
  options: { nats: string; token: string | undefined; json: boolean },
): Promise<ExitCode> {
  const nc = await connectCli(options.nats);
  try {
    const { entries } = await requestAs(
      nc,
      Subjects.MEMORY_GET,
      MemoryContract,
      { contextId },
      options.token,
    );
    if (options.json) {
      console.log(JSON.stringify({ contextId, entries }));
      return ExitCode.OK;
    }
    if (entries.length === 0) {
      console.log(`context ${contextId} has no memory`);
      return ExitCode.OK;
    }
    console.log(
      table(
        ["AT", "RUN", "WORKFLOW", "RESULT"],
        entries.map((item) => [
          item.at,
          item.runId,
          item.workflowId,
          item.error === undefined
            ? formatJson(item.output ?? null)
                .replaceAll("\n", " ")
                .slice(0, 80)
            : `${item.error.code}: ${item.error.message}`,
        ]),
      ),
    );
    return ExitCode.OK;
  } finally {
    await nc.close();
  }
}

/**
 * `loom memory clear <contextId>`: forgets a context's memory (policy: `memory.clear`). A context
 * the caller may not clear fails with CONTEXT_NOT_FOUND, as one with no memory does.
 */
export async function memoryClearCommand(
  contextId: string,
  options: { nats: string; token: string | undefined },
): Promise<ExitCode> {
  const nc = await connectCli(options.nats);
  try {
    await requestAs(nc, Subjects.MEMORY_CLEAR, MemoryContract, { contextId }, options.token);
    console.log(`context ${contextId} forgotten`);
    return ExitCode.OK;
  } finally {
    await nc.close();
  }
}
