import { jetstreamManager } from "@nats-io/jetstream";
import { ErrorCode } from "../../../schemas/errors.ts";
import { LoomError, natsServerOptions, replicateStreams } from "../../kit/index.ts";
import { connectCli } from "../connection.ts";
import { ExitCode } from "../exit-codes.ts";

const OPERATOR_USER_HINT =
  "give --nats (or NATS_URL) as nats://<user>:<password>@host:4222 for a NATS user of your own with `$JS.API.STREAM.UPDATE.>`: none of Loom's users may change a stream, policy-admin included, since an update can also add sources or a republish that read or write any stream";

/**
 * `loom streams replicate <count>`: moves every existing Loom stream and bucket to `count`
 * replicas. Services only create what is absent and may never change a stream, and no Loom NATS
 * user may: this is the operator's act, as a NATS user of their own given in the URL.
 */
export async function streamsReplicateCommand(
  replicas: number,
  options: { nats: string; json: boolean },
): Promise<ExitCode> {
  if (natsServerOptions(options.nats).user === undefined) {
    throw new LoomError(
      ErrorCode.INVALID_INPUT,
      `loom streams replicate changes streams: ${OPERATOR_USER_HINT}`,
    );
  }
  const nc = await connectCli(options.nats);
  try {
    const moved = await replicateStreams(await jetstreamManager(nc), replicas).catch((error: unknown) => {
      if (error instanceof Error && /permissions violation/i.test(error.message)) {
        throw new LoomError(
          ErrorCode.NATS_AUTH_FAILED,
          `NATS user ${natsServerOptions(options.nats).user} may not change streams: ${OPERATOR_USER_HINT}`,
          { cause: error },
        );
      }
      throw error;
    });
    if (options.json) console.log(JSON.stringify({ replicas, moved }));
    else if (moved.length === 0) console.log(`every Loom stream already has ${replicas} replica(s)`);
    else for (const name of moved) console.log(`${name} -> ${replicas} replica(s)`);
    return ExitCode.OK;
  } finally {
    await nc.close();
  }
}
