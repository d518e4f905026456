import { Kvm } from "@nats-io/kv";
import { ContextMemorySchema } from "../../../schemas/memory.ts";
import { Buckets } from "../../../schemas/subjects.ts";
import { parsePayload } from "../../kit/index.ts";
import { connectCli } from "../connection.ts";
import { ExitCode } from "../exit-codes.ts";
import { formatJson, table } from "../render.ts";

/** `loom memory get <contextId>`: what earlier runs of a context left for the next ones. */
export async function memoryGetCommand(
  contextId: string,
  options: { nats: string; json: boolean },
): Promise<ExitCode> {
  const nc = await connectCli(options.nats);
  try {
    const kv = await new Kvm(nc).open(Buckets.MEMORY).catch(() => undefined);
    const entry = await kv?.get(contextId);
    const entries =
      entry === null || entry === undefined || entry.operation !== "PUT"
        ? []
        : parsePayload(ContextMemorySchema, entry.value, `memory of ${contextId}`).entries;
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

/** `loom memory clear <contextId>`: forgets a context's memory (later runs start from nothing). */
export async function memoryClearCommand(contextId: string, options: { nats: string }): Promise<ExitCode> {
  const nc = await connectCli(options.nats);
  try {
    const kv = await new Kvm(nc).open(Buckets.MEMORY);
    await kv.purge(contextId);
    console.log(`context ${contextId} forgotten`);
    return ExitCode.OK;
  } finally {
    await nc.close();
  }
}
